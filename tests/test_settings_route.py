"""Settings have one home: every front end derives its flags and defaults from ``ProbeSettings``."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from probattr_monitor import ProbAttrCallback, ProbeSettings
from probattr_monitor.cli import build_parser, settings_flag, settings_from_args


def settings_flags(command: str) -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = commands.choices[command]
    group = next(g for g in sub._action_groups if g.title == "probe settings (ProbeSettings)")
    return {flag for action in group._group_actions for flag in action.option_strings
            if action.help != argparse.SUPPRESS}  # the 0.2 spellings are hidden (tests/package/test_deprecations)


def hidden_flags(command: str) -> dict[str, str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    group = next(g for g in commands.choices[command]._action_groups if g.title == "probe settings (ProbeSettings)")
    return {flag: action.dest for action in group._group_actions for flag in action.option_strings
            if action.help == argparse.SUPPRESS}


@pytest.mark.parametrize("command", ["attribute", "sweep"])
def test_every_settings_flag_maps_to_a_field_and_every_field_has_one(command):
    fields = dataclasses.fields(ProbeSettings)
    assert settings_flags(command) == {settings_flag(f) for f in fields}
    assert hidden_flags(command) == {"--candidates": "candidate_policy"}  # the 0.2 flag of a renamed field
    assert {f.name for f in fields} >= {"max_new_tokens", "as_band", "entropy_threshold", "candidate_budget",
                                        "progress"}


def test_only_the_flags_given_change_the_settings():
    parser = build_parser()
    base = ProbeSettings(max_new_tokens=7, top_k=3)
    args = parser.parse_args(["attribute", "--model", "m", "--as-band", "0.5", "--no-progress", "--top-k", "9"])
    assert settings_from_args(args, base) == ProbeSettings(max_new_tokens=7, top_k=9, as_band=0.5, progress=False)
    assert settings_from_args(parser.parse_args(["attribute", "--model", "m"])) == ProbeSettings()


def test_help_text_and_choices_come_from_the_fields():
    help_text = build_parser()._subparsers._group_actions[0].choices["attribute"].format_help()
    for setting in dataclasses.fields(ProbeSettings):
        assert settings_flag(setting) in help_text
    assert "{context,prompt}" in help_text and "{auto,exact,budget}" in help_text


def test_the_package_and_its_cli_parser_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, probattr_monitor, probattr_monitor.cli as cli; cli.build_parser(); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.stdout.split() == ["False", "False"], completed.stderr[-2000:]
    from probattr_monitor import ProbAttrCallback as Callback  # the lazy name resolves to the class

    assert Callback.__name__ == "ProbAttrCallback"


def test_the_callback_takes_settings_whole_or_as_its_dict():
    settings = ProbeSettings(max_new_tokens=5, candidate_policy="exact")
    assert ProbAttrCallback(prompts=["x"], settings=settings).settings == settings.replace(progress=False)
    assert ProbAttrCallback(prompts=["x"], settings=settings.to_dict()).settings == settings.replace(progress=False)
    with pytest.raises(ValueError, match="unknown probe setting"):
        ProbAttrCallback(prompts=["x"], settings={"max_new_tokenz": 5})
