"""pytest's ``--doctest-modules`` imports every module under ``tests/``, the subprocess scripts
included: importing one must run nothing and write nothing (a script that trained at import once
wrote a whole run into a folder named after pytest's ``-m`` argument)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parent / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_importing_a_script_runs_nothing(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["pytest", "-m", "not slow"])
    spec = importlib.util.spec_from_file_location(f"_script_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert list(tmp_path.iterdir()) == [], "importing it wrote files"
