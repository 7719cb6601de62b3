"""The command-line guide and reference are generated from the parser, so they name every
subcommand and flag it has (a hand-written synopsis had drifted: no ``joint``, no ``--scopes``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def docs_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_guide_shows_every_subcommand_and_flag_the_parser_has():
    hooks = docs_hooks()
    _, subcommands = hooks.subcommands()
    names = [name for name, _ in subcommands]
    assert {"attribute", "sweep", "watch", "report", "demo", "faithfulness", "joint"} <= set(names)
    guide = (ROOT / "docs" / "guides" / "cli.md").read_text(encoding="utf-8")
    page = hooks.on_page_markdown(guide, None, None, None)
    assert hooks.SYNOPSIS_MARKER in guide and hooks.SYNOPSIS_MARKER not in page
    for name, sub in subcommands:
        assert f"probattr-monitor {name} " in page
        for action in sub._actions:
            flags = [flag for flag in action.option_strings if flag.startswith("--") and flag != "--help"]
            if flags and action.help != "==SUPPRESS==":
                assert flags[0] in page, f"{flags[0]} of {name} is not in the CLI guide"


def test_sweep_watch_and_demo_offer_every_tracker_the_sinks_have():
    from probattr_monitor.sinks.base import REPORT_TARGETS

    _, subcommands = docs_hooks().subcommands()
    offered = {name: next(a.choices for a in sub._actions if "--report-to" in a.option_strings)
               for name, sub in subcommands if name in ("sweep", "watch", "demo")}
    assert set(offered) == {"sweep", "watch", "demo"}
    assert all(set(choices) - {"none"} == set(REPORT_TARGETS) for choices in offered.values()), offered
