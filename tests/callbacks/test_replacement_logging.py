"""Replacement entropy, when enabled, reaches TensorBoard, the record and the report."""

from __future__ import annotations

import pytest

from probattr_monitor import ProbAttrCallback, ProbeSettings
from probattr_monitor.monitoring.record import CheckpointRecord
from probattr_monitor.report import report_run

from ..readers import read_tensorboard
from .helpers import PROMPTS, make_trainer


def test_callback_logs_replacement_entropy_and_the_report_draws_it(tmp_path):
    settings = ProbeSettings(max_new_tokens=3, replacement_entropy=True, replacement_max_candidates=4)
    callback = ProbAttrCallback(prompts=PROMPTS, report_to="tensorboard", logging_dir=str(tmp_path / "tb"),
                                settings=settings, max_overhead=None)
    make_trainer(tmp_path / "run", callbacks=[callback], max_steps=4, save_steps=2).train()
    scalars = read_tensorboard(tmp_path / "tb")["scalars"]
    record = CheckpointRecord.load(tmp_path / "run" / "checkpoint-4" / "probattr.json")
    assert record is not None and record.ok
    assert scalars["probattr/mean_replacement_entropy"][4] == pytest.approx(record.summary["mean_replacement_entropy"])
    assert set(scalars["probattr/mean_original_response_share"]) == {2, 4}
    assert all(r["summary"]["generations"] > 0 for r in record.results)
    html = report_run(tmp_path / "run").read_text(encoding="utf-8")
    assert "replacement entropy (nats)" in html and "H rep" in html
