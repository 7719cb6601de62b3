"""Trackers are declared once (``sinks.base.TRACKERS``): a tracker registered there is offered by
every ``--report-to``, accepted by ``report_to=`` and gets the probes of a real Trainer run."""

from __future__ import annotations

import pytest

from probattr_monitor import ProbAttrCallback, ProbeSettings
from probattr_monitor.cli import build_parser
from probattr_monitor.errors import InputError
from probattr_monitor.sinks import Sink, Tracker, register_tracker, tracker_names, unregister_tracker

from .helpers import PROMPTS, make_trainer

WRITTEN: list = []


class ListSink(Sink):
    """Keeps what it is given, in memory."""

    name = "in-memory"

    def write(self, record) -> None:
        WRITTEN.append(record)

    def close(self) -> None:
        pass


@pytest.fixture
def in_memory():
    WRITTEN.clear()
    register_tracker(Tracker("in-memory", package="json", extra="json", sink=ListSink))
    yield WRITTEN
    unregister_tracker("in-memory")


def report_to_choices(command: str) -> tuple:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[command]
    return next(a.choices for a in sub._actions if "--report-to" in a.option_strings)


def test_a_registered_tracker_is_offered_everywhere_and_gets_a_trainer_runs_probes(in_memory, tmp_path):
    assert "in-memory" in tracker_names()
    assert all("in-memory" in report_to_choices(command) for command in ("sweep", "watch", "demo"))
    callback = ProbAttrCallback(prompts=PROMPTS, settings=ProbeSettings(max_new_tokens=3), max_overhead=None,
                                report_to="in-memory")
    make_trainer(tmp_path, [callback], max_steps=4, save_steps=2).train()
    assert [record.step for record in in_memory] == [2, 4]
    assert "probattr/log_p_response" in in_memory[0].scalars


def test_unknown_trackers_and_incomplete_sinks_are_refused():
    with pytest.raises(InputError, match="report_to should be one or a list of"):
        ProbAttrCallback(report_to="in-memory")
    with pytest.raises(InputError, match="cannot be removed"):
        unregister_tracker("tensorboard")
    with pytest.raises(InputError, match="report_to keyword"):
        register_tracker(Tracker("all", package="json", extra="json", sink=ListSink))

    class NoClose(Sink):
        def write(self, record) -> None:
            pass

    with pytest.raises(TypeError):
        NoClose()
