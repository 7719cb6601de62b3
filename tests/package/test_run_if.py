"""``run_if``: one helper says what a test needs and skips it, with the install line, without it."""

from __future__ import annotations

import pytest

from ..run_if import missing, run_if


def test_a_missing_package_is_named_with_how_to_install_it():
    assert missing(packages=("no_such_package_xyz",)) == ["no_such_package_xyz (pip install no_such_package_xyz)"]
    assert missing(packages=("torch",)) == []
    (skip,) = run_if(packages=("no_such_package_xyz",))
    assert skip.mark.args == (True,) and "needs no_such_package_xyz" in skip.mark.kwargs["reason"]


def test_cuda_tests_are_marked_gpu_and_skip_without_a_device():
    import torch

    skip, gpu = run_if(cuda=True)
    assert gpu.mark.name == "gpu" and skip.mark.args == (not torch.cuda.is_available(),)


@run_if(packages=("no_such_package_xyz",))
def test_the_mark_skips_as_a_decorator():
    pytest.fail("ran without its package")
