"""What a test needs is said through ``tests/run_if.py`` only, so the tiers stay in one place."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_test_skips_inline():
    inline = [f"{path.relative_to(TESTS)}:{number}" for path in sorted(TESTS.rglob("*.py"))
              if path.name not in ("run_if.py", "test_no_inline_skips.py")
              for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
              if "pytest.mark.skipif(" in line or "pytest.importorskip(" in line]
    assert not inline, f"use tests/run_if.py's run_if instead of an inline skip: {inline}"
