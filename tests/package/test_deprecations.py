"""The 0.2 spellings outside the callback still work until 0.5, with a ``FutureWarning``
(the callback's own are in ``tests/callbacks/test_arguments.py``)."""

from __future__ import annotations

import pytest

from probattr_monitor import ProbeSettings
from probattr_monitor.cli import build_parser, settings_from_args

pytestmark = pytest.mark.usefixtures("fresh_deprecation_warnings")  # each test sees the warnings afresh


def test_the_renamed_setting_warns_once_in_python_and_on_the_command_line():
    with pytest.warns(FutureWarning, match="candidates is deprecated.*use candidate_policy"):
        assert ProbeSettings(candidates="budget").candidate_policy == "budget"
    assert ProbeSettings.from_dict({"candidates": "exact"}).candidate_policy == "exact"  # a 0.2 record: silent
    with pytest.warns(FutureWarning, match="--candidates is deprecated.*use --candidate-policy"):
        arguments = build_parser().parse_args(["attribute", "--model", "m", "--prompt", "p", "--candidates", "exact"])
    assert settings_from_args(arguments).candidate_policy == "exact"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["attribute", "--model", "m", "--prompt", "p", "--candidates", "magic"])


def test_the_old_record_names_warn_and_are_the_new_ones():
    from probattr_monitor import sinks
    from probattr_monitor.monitoring import record

    with pytest.warns(FutureWarning, match="RunRecord is deprecated.*removed in 0.5; use .*CheckpointRecord"):
        assert record.RunRecord is record.CheckpointRecord
    with pytest.warns(FutureWarning, match="ProbeRecord is deprecated.*removed in 0.5; use .*LogEntry"):
        assert sinks.ProbeRecord is sinks.LogEntry
    with pytest.raises(AttributeError):
        record.NoSuchName  # noqa: B018


def test_the_old_tiny_models_module_warns_and_gives_the_demos():
    from probattr_monitor import tiny_models
    from probattr_monitor.demo import tiny_models as moved

    with pytest.warns(FutureWarning, match="probattr_monitor.tiny_models is deprecated"):
        assert tiny_models.tiny_gpt2 is moved.tiny_gpt2


def test_the_moved_public_modules_still_resolve_with_a_future_warning():
    from probattr_monitor import report, sweep
    from probattr_monitor.probes import result, settings
    from probattr_monitor.probes.types import result as moved_result
    from probattr_monitor.probes.types import settings as moved_settings

    with pytest.warns(FutureWarning, match="probattr_monitor.probes.result is deprecated"):
        assert result.ProbeResult is moved_result.ProbeResult
    with pytest.warns(FutureWarning, match="probattr_monitor.probes.settings is deprecated"):
        assert settings.ProbeSettings is moved_settings.ProbeSettings
    with pytest.warns(FutureWarning, match="sweep.report_run is deprecated"):
        assert sweep.report_run is report.report_run


# Every module of 0.2's probes/ and where it lives now ("" for the package's errors module).
MOVED_PROBE_MODULES = {
    "budgeted": "engines.budgeted", "cache": "engines.cache", "chat": "inputs.chat", "engine": "engines.engine",
    "errors": "", "estimator": "maths.estimator", "joint": "engines.joint", "likelihood": "engines.likelihood",
    "noise": "maths.noise", "quantities": "maths.quantities", "replacement": "engines.replacement",
    "scopes": "engines.scopes", "scores": "engines.scores", "tokens": "inputs.tokens",
}


@pytest.mark.parametrize("old", sorted(MOVED_PROBE_MODULES))
def test_every_module_of_0_2s_probes_still_answers_at_its_old_place(old):
    import importlib

    new = MOVED_PROBE_MODULES[old]
    target = importlib.import_module(f"probattr_monitor.probes.{new}" if new else "probattr_monitor.errors")
    public = [name for name in vars(target) if not name.startswith("_")
              and getattr(vars(target)[name], "__module__", None) == target.__name__]
    assert public, f"{target.__name__} defines nothing public"
    stub = importlib.import_module(f"probattr_monitor.probes.{old}")
    with pytest.warns(FutureWarning, match=f"probattr_monitor.probes.{old} is deprecated"):
        assert getattr(stub, public[0]) is getattr(target, public[0])


def test_the_migration_page_names_every_0_2_spelling_and_the_warnings_name_0_5():
    """One deprecation path: each warning names the release that removes it, and the migration page
    lists every spelling the code still maps (so a new deprecation without its line fails here)."""
    import warnings
    from pathlib import Path

    from probattr_monitor import ProbAttrCallback
    from probattr_monitor.callbacks.arguments import SETTINGS_KEYWORDS_0_2
    from probattr_monitor.errors import REMOVED_IN
    from probattr_monitor.probes.types.settings import RENAMED_SETTINGS

    page = (Path(__file__).resolve().parents[2] / "docs" / "guides" / "migration.md").read_text(encoding="utf-8")
    assert REMOVED_IN == "0.5" and "removed in 0.5" in page
    spellings = [*(f"{name}=" for name in SETTINGS_KEYWORDS_0_2), *RENAMED_SETTINGS, "on_save=", "on_evaluate=",
                 'responses="fixed"', "RunRecord", "ProbeRecord", "sweep.report_run", "probattr_monitor.tiny_models",
                 "WatchConfig(wandb_run_id=...)", "WatchConfig(mlflow_run_id=...)",
                 "open_sinks(wandb_run_id=..., mlflow_run_id=...)",
                 *(f"--{name.replace('_', '-')}" for name in RENAMED_SETTINGS)]
    spellings += [f"probes.{old}`" if f"probes.{old}`" in page else f"`{old}`" for old in MOVED_PROBE_MODULES]
    missing = [s for s in spellings if s not in page]
    assert not missing, f"docs/guides/migration.md lacks {missing}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ProbAttrCallback(prompts="a b", max_new_tokens=3, on_save=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert len(messages) == 2 and all("will be removed in 0.5; use" in m for m in messages)
