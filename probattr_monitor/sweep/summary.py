"""A sweep's summary: the records of this sweep's key read back, one row per checkpoint, the
recommendation (``monitoring.decision``), the CSV/JSON files and the HTML report."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional, Sequence

from ..checkpoints import Checkpoint, read_trainer_state
from ..errors import RunFolderError
from ..monitoring.convergence import drift
from ..monitoring.decision import recommend, what_the_recommendation_sees
from ..monitoring.record import CheckpointRecord
from ..monitoring.run import guard_values
from ..monitoring.statistics import drift_keys, summary_keys
from ..probes.maths.values import is_finite_number
from ..probes.types.result import ProbeResult
from ..storage import write_json_atomic, write_text_atomic
from .config import SUMMARY_CSV, SUMMARY_JSON, SweepConfig, SweepSummary, csv_keys, row_keys


def load_records(checkpoints: Sequence[Checkpoint], record_of) -> dict[str, CheckpointRecord]:
    """``{checkpoint name: record}`` for the checkpoints for which ``record_of(checkpoint)`` finds one."""
    records = {}
    for checkpoint in checkpoints:
        record = record_of(checkpoint)
        if record is not None:
            records[checkpoint.name] = record
    return records


def collect_rows(checkpoints: Sequence[Checkpoint], records: dict, keys: Optional[dict] = None,
                 reused: Sequence[int] = ()) -> list[dict]:
    """One summary row (``row_keys()``) per checkpoint, from its record; a checkpoint with no record,
    or only one made with another key than ``keys[name]`` (when given), is ``failed``. The drift
    columns compare each ``ok`` record with the previous ``ok`` one (``monitoring.convergence``)."""
    losses = eval_losses(checkpoints)
    rows = []
    previous: list = []
    for checkpoint in checkpoints:
        record = records.get(checkpoint.name)
        row: dict[str, Any]
        if record is None or (keys is not None and not record.matches(keys[checkpoint.name])):
            why = "no probattr.json record" if record is None else (
                "its probattr.json was made with other settings, prompts or dtype")
            row = {"step": checkpoint.step, "checkpoint": checkpoint.name, "status": "failed", "error": why,
                   **{name: None for name in (*summary_keys(), *drift_keys(), "invalid_prompts")}, "seconds": None,
                   "prompt_log_p": None}
        else:
            results = [ProbeResult.from_dict(r) for r in record.results]
            changes: dict[str, Any] = drift(previous, results) if previous else dict.fromkeys(drift_keys())
            previous = results if record.ok and results else previous
            row = {
                "step": checkpoint.step,
                "checkpoint": checkpoint.name,
                "status": record.status,
                "error": record.error,
                **{name: record.summary.get(name) for name in (*summary_keys(), "invalid_prompts")},
                **changes,
                "seconds": record.probe_seconds,
                "prompt_log_p": guard_values(results, record.guard_log_p),
            }
        row.update(eval_loss=losses.get(checkpoint.step), reused=checkpoint.step in reused)
        rows.append({name: row[name] for name in row_keys()})
    return rows


def summarise(
    config: SweepConfig, checkpoints: Sequence[Checkpoint], folder: Path, computed, reused, records: dict,
    keys: dict
) -> SweepSummary:
    """Rows from ``records`` made with this sweep's keys (per checkpoint), the recommendation, and
    the CSV / JSON summaries (atomic)."""
    rows = collect_rows(checkpoints, records, keys, reused)
    recommended = recommend(rows, config.rule, fixed_responses=config.prompt_set.response_mode == "fixed")
    write_json_atomic(folder / SUMMARY_JSON, {"recommended": recommended, "rows": rows})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_keys(), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(folder / SUMMARY_CSV, buffer.getvalue())
    return SweepSummary(rows=rows, recommended=recommended, output_dir=folder, computed=computed, reused=reused)


def fixed_responses(records: dict) -> bool:
    """Whether ``records`` scored fixed responses (the same ids at every checkpoint)."""
    return all(r.prompt_set.get("response_mode") == "fixed" for r in records.values())


def eval_losses(checkpoints: Sequence[Checkpoint]) -> dict:
    """``{step: eval_loss}`` from the checkpoints' ``trainer_state.json`` log histories. A file that
    is missing or of the wrong shape contributes nothing, and a loss that is not a finite number (the
    NaN a diverged evaluation logs, a string) is a missing value, for every rule and every output."""
    losses = {}
    for checkpoint in checkpoints:
        try:
            state = read_trainer_state(checkpoint.path)
        except RunFolderError:
            continue
        history = (state or {}).get("log_history", [])
        for entry in history if isinstance(history, list) else []:
            if isinstance(entry, dict) and is_finite_number(entry.get("eval_loss")) and "step" in entry:
                losses[entry["step"]] = float(entry["eval_loss"])
    return losses


def say_what_the_recommendation_sees(config: SweepConfig, checkpoints: Sequence[Checkpoint], console) -> None:
    """One line before probing (``monitoring.decision.what_the_recommendation_sees``): whether the
    run logged an eval loss and how many prompts with fixed responses the guard compares."""
    fixed = len(config.prompts or []) if isinstance(config.responses, (list, tuple)) else 0
    statement, blind = what_the_recommendation_sees(bool(eval_losses(checkpoints)), fixed + len(config.guard or []))
    console.print(statement[0].upper() + statement[1:] + ".", style="yellow" if blind else None, markup=False,
                  highlight=False)
