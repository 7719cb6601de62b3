"""Each statistic declared once (``monitoring.statistics``): what reads the table, and a statistic
of one's own reaching a real Trainer's trackers, early stopping, the sweep's rows and the report."""

from __future__ import annotations

import pytest

from probattr_monitor import ProbAttrCallback, ProbAttrEarlyStopping, ProbeSettings
from probattr_monitor.errors import InputError
from probattr_monitor.monitoring.metrics import run_summary, scalar_logs
from probattr_monitor.monitoring.statistics import (
    STATISTICS,
    Statistic,
    charted,
    drift_keys,
    register_statistic,
    statistic_named,
    summary_keys,
    unregister_statistic,
)
from probattr_monitor.probes.types.settings import SCOPE_NAMES

from ..callbacks.helpers import PROMPTS, make_trainer
from ..readers import read_tensorboard

BUILT_IN_SUMMARY = ("noise_tokens", "noise_fraction", "mean_attribution", "mean_entropy_prompt",
                    "mean_entropy_context", "mean_kl", "log_p_response", "soft_noise", "mean_replacement_entropy",
                    "mean_original_response_share", *(f"mean_{name}_scope" for name in SCOPE_NAMES))


def max_attribution(results):
    scores = [t.attribution_score for r in results if r.valid for t in r.tokens]
    return max(scores) if scores else None


@pytest.fixture
def registered():
    statistic = register_statistic(Statistic("max_attribution", "largest AS (nats)", True, max_attribution,
                                             "higher: one token carries the response", chart=True))
    try:
        yield statistic
    finally:
        unregister_statistic("max_attribution")
    assert "max_attribution" not in STATISTICS


def test_the_table_holds_every_built_in_statistic_in_order():
    from probattr_monitor.callbacks.early_stopping import GREATER_IS_BETTER
    from probattr_monitor.monitoring.metrics import DRIFT_KEYS, SUMMARY_KEYS

    assert summary_keys() == BUILT_IN_SUMMARY  # 0.3's SUMMARY_KEYS, in its order
    assert drift_keys() == ("drift_attribution", "drift_entropy")
    assert SUMMARY_KEYS == summary_keys() and DRIFT_KEYS == drift_keys()  # the 0.3 names, derived
    assert GREATER_IS_BETTER == {name: s.greater_is_better for name, s in STATISTICS.items()}
    assert [s.name for s in charted()] == ["log_p_response", "soft_noise", "mean_replacement_entropy",
                                           "drift_attribution"]


def test_a_registered_statistic_reaches_the_trainer_early_stopping_sweep_and_report(tmp_path, registered):
    from probattr_monitor.report import build_report
    from probattr_monitor.sweep import row_keys

    callback = ProbAttrCallback(prompts=PROMPTS, report_to="tensorboard", logging_dir=str(tmp_path / "tb"),
                                settings=ProbeSettings(max_new_tokens=3), max_overhead=None, guard=None)
    stopper = ProbAttrEarlyStopping(callback, statistic="max_attribution", patience=10)
    assert stopper.greater_is_better is True  # its declared direction
    make_trainer(tmp_path / "out", [callback, stopper], max_steps=4, save_steps=2).train()
    logged = read_tensorboard(tmp_path / "tb")["scalars"]["probattr/max_attribution"]
    assert set(logged) == {2, 4}
    assert logged[4] == pytest.approx(max_attribution(callback._last.results), rel=1e-6)
    assert "max_attribution" in row_keys() and "max_attribution" in run_summary(callback._last.results)
    rows = [{"step": step, "checkpoint": f"checkpoint-{step}", "status": "ok", "max_attribution": value}
            for step, value in sorted(logged.items())]
    for row in rows:
        for key in row_keys():
            row.setdefault(key, None)
    assert "largest AS (nats)" in build_report(rows, {}, None, "a run")  # charted: chart=True


def test_a_registered_statistic_that_raises_is_none_with_a_warning(registered):
    from probattr_monitor import probe
    from probattr_monitor.demo.tiny_models import byte_bpe_tokenizer, tiny_gpt2

    def broken(results):
        raise RuntimeError("boom")

    tokenizer = byte_bpe_tokenizer(["the cat sat on the mat"], vocab_size=270)
    results = probe(tiny_gpt2(len(tokenizer)), tokenizer, ["the cat"], responses=[" sat"], progress=False)
    register_statistic(Statistic("max_attribution", "largest AS (nats)", True, broken))
    with pytest.warns(UserWarning, match="the statistic 'max_attribution' failed: .*boom"):
        summary = run_summary(results)
    assert summary["max_attribution"] is None and summary["log_p_response"] is not None
    assert "probattr/max_attribution" not in scalar_logs(results, 0.1)


@pytest.mark.parametrize("make, message", [
    (lambda: register_statistic(Statistic("log_p_response", "x", True, max_attribution)),
     "built-in statistic 'log_p_response' cannot be replaced"),
    (lambda: unregister_statistic("soft_noise"), "built-in statistic 'soft_noise' cannot be removed"),
    (lambda: Statistic("max attribution", "x", True, max_attribution), "should be an identifier"),
    (lambda: Statistic("x", "x", "yes", max_attribution), "greater_is_better should be True or False"),
    (lambda: register_statistic(Statistic("two_runs", "x", True)), "needs compute"),
    (lambda: register_statistic(("x", max_attribution)), "takes a Statistic"),
    (lambda: statistic_named("nope"), "unknown statistic 'nope'; known: noise_tokens"),
    (lambda: ProbAttrEarlyStopping(statistic="nope"), "statistic should be one of noise_tokens"),
])
def test_bad_declarations_are_one_input_error(make, message):
    with pytest.raises(InputError, match=message):
        make()
