"""The installed package asks for no upper bound on torch (a newer torch in the user's environment
stays in place), and ships its licence."""

from __future__ import annotations

from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_requirements_never_cap_torch():
    [torch] = [Requirement(r) for r in requires("probattr-monitor") or [] if Requirement(r).name == "torch"]
    assert not torch.marker
    assert all(spec.operator in (">=", ">", "!=") for spec in torch.specifier), str(torch.specifier)
    assert torch.specifier.contains("2.15.0") and torch.specifier.contains("3.0.0")


def test_the_licence_matches_the_metadata():
    assert "license = Apache-2.0" in (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Version 2.0" in (ROOT / "LICENSE").read_text(encoding="utf-8")
