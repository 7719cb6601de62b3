"""Each kind of bad input raises its own error type from ``probattr_monitor.errors``, and the
CLI turns every ``InputError`` and ``MissingPackageError`` into one line and exit 2."""

from __future__ import annotations

import pytest

from probattr_monitor.checkpoints import discover_checkpoints
from probattr_monitor.errors import InputError, MissingPackageError, ProbeInputError, RunFolderError
from probattr_monitor.sinks import require

from ..cli.test_cli import assert_usage_error, cli_main


def test_a_missing_run_folder_is_a_run_folder_error_not_a_probe_input_error(tmp_path):
    with pytest.raises(RunFolderError, match="run folder not found") as caught:
        discover_checkpoints(tmp_path / "nope")
    assert isinstance(caught.value, InputError) and not isinstance(caught.value, ProbeInputError)
    assert_usage_error(cli_main("report", tmp_path / "nope"), "run folder not found")


def test_a_missing_optional_package_carries_its_install_line():
    with pytest.raises(MissingPackageError) as caught:
        require("no_such_package_for_probattr", "wandb")
    assert isinstance(caught.value, ImportError)
    assert caught.value.install == "pip install 'probattr-monitor[wandb]'"
    assert caught.value.package == "no_such_package_for_probattr"


def test_every_warning_to_users_goes_through_warn_user():
    """One path for the package's warnings (errors.warn_user: rank zero only, so a multi-process run
    says each thing once), and for its deprecations (errors.warn_renamed, which uses it)."""
    import ast
    from pathlib import Path

    import probattr_monitor

    root = Path(probattr_monitor.__file__).parent
    direct = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "warn" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "warnings":
                direct.append(f"{path.relative_to(root)}:{node.lineno}")
    assert direct and all(d.startswith("errors.py:") for d in direct), direct
