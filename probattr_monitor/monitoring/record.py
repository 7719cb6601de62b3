"""``probattr.json``: the full results of one probe run, stored beside the checkpoint it probed.

The record is keyed by what determines its numbers: the settings and a hash of the prompt set
(prompts, response mode and any fixed responses), so a reader can tell whether it is still valid.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Sequence

from .metrics import run_summary
from .probes.budgeted import ESTIMATOR_REVISION
from .probes.settings import ProbeSettings
from .storage import write_json_atomic

RESULTS_FILE = "probattr.json"
FORMAT_VERSION = 1


def prompt_set_hash(prompts: Sequence[str], response_mode: str, responses: Optional[Sequence[str]]) -> str:
    """SHA-256 of the prompt set as JSON: prompts, response mode and fixed responses (if given)."""
    text = json.dumps({"prompts": list(prompts), "response_mode": response_mode,
                       "responses": None if responses is None else list(responses)}, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_record(run, prompts: Sequence[str], response_mode: str, settings: ProbeSettings,
               folder: Optional[Path] = None, write: bool = False, responses: Optional[Sequence[str]] = None) -> dict:
    """The ``probattr.json`` object of a :class:`~probattr_monitor.probe_run.ProbeRun`, written
    atomically to ``folder`` if ``write``.

    Fields: ``format_version``, ``probattr_monitor_version``, ``estimator_revision``
    (``probes.budgeted.ESTIMATOR_REVISION``: budgeted numbers differ between revisions), ``step``, ``checkpoint`` (the folder name), ``settings``,
    ``prompt_set_hash``, ``status`` (``"ok"`` or ``"failed"``), ``error``, ``probe_seconds``,
    ``summary`` (``metrics.run_summary``) and ``results`` (one MATH.md object per prompt).
    """
    from . import __version__

    record = {
        "format_version": FORMAT_VERSION,
        "probattr_monitor_version": __version__,
        "estimator_revision": ESTIMATOR_REVISION,
        "step": run.step,
        "checkpoint": folder.name if folder is not None else None,
        "settings": settings.to_dict(),
        "prompt_set_hash": prompt_set_hash(prompts, response_mode, responses),
        "status": "ok" if run.error is None else "failed",
        "error": run.error,
        "probe_seconds": run.seconds,
        "summary": run_summary(run.results),
        "results": [result.to_dict() for result in run.results],
    }
    if write:
        write_json_atomic(Path(folder) / RESULTS_FILE, record)
    return record
