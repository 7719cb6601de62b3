"""Post-hoc sweeps: the probes over every saved checkpoint, resumable, logged like the callback.

Per checkpoint (in step order) the sweep loads the model, runs :func:`probe_run.run_probes` (the
callback's code path) and writes ``probattr.json`` atomically, keyed by the settings and the
prompt-set hash. A rerun reuses records whose key matches and whose status is ``"ok"``, retries
failed ones and recomputes stale ones; a sweep killed at any moment leaves whole files only, and
a rerun finishes the rest. Under ``torchrun`` / ``accelerate launch`` the checkpoints are split
across processes (round robin), and rank 0 merges, logs and summarises.

Outputs (into the run folder, or ``out``): ``sweep_summary.csv`` and ``sweep_summary.json``
(``{"recommended": {"step", "checkpoint"}, "rows": [...]}``), and the HTML report.
The recommendation is the checkpoint with the fewest noise tokens; ties go to the earliest step
(what ``Trainer`` keeps with ``metric_for_best_model="probattr_noise_tokens"``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from .checkpoints import Checkpoint, discover_checkpoints, explicit_checkpoints, select_steps
from .metrics import SUMMARY_KEYS
from .probe_run import ProbeRun, probe_record, run_probes
from .probes.budgeted import ESTIMATOR_REVISION
from .probes.errors import ProbeInputError
from .probes.result import ProbeResult
from .probes.settings import ProbeSettings
from .prompts import paper_prompts
from .run_record import RESULTS_FILE, prompt_set_hash, run_record
from .storage import write_json_atomic, write_text_atomic

SUMMARY_CSV, SUMMARY_JSON = "sweep_summary.csv", "sweep_summary.json"
ROW_KEYS = ("step", "checkpoint", "status", "error", *SUMMARY_KEYS, "invalid_prompts", "eval_loss", "seconds",
            "reused")
EXIT_SOME_FAILED = 3


@dataclass
class SweepConfig:
    """What to sweep and how; the probe settings are the callback's.

    Attributes:
        run_dir: a Trainer output folder with ``checkpoint-<step>`` folders (or ``None`` with
            ``checkpoints``).
        checkpoints: explicit model folders instead of discovery.
        steps: only these steps.
        out: write records, summaries and logs here instead of into the run / checkpoint folders.
        tokenizer: tokenizer folder for checkpoints that have no tokenizer files.
        prompts, responses: the prompt set; ``responses=None`` means greedy continuations.
        settings: :class:`ProbeSettings`.
        report_to: ``"tensorboard"`` and/or ``"wandb"``.
    """

    run_dir: Optional[str] = None
    checkpoints: Optional[Sequence[str]] = None
    steps: Optional[Sequence[int]] = None
    out: Optional[str] = None
    tokenizer: Optional[str] = None
    prompts: Sequence[str] = field(default_factory=paper_prompts)
    responses: Optional[Sequence[str]] = None
    settings: ProbeSettings = field(default_factory=lambda: ProbeSettings(progress=False))
    report_to: Sequence[str] = ()
    device: str = "cpu"
    dtype: str = "float32"
    trust_remote_code: bool = False
    progress: bool = True
    report: bool = True

    @property
    def response_mode(self) -> str:
        return "generate" if self.responses is None else "fixed"

    @property
    def key(self) -> tuple:
        return self.settings.result_key(), prompt_set_hash(self.prompts, self.response_mode, self.responses)


@dataclass
class SweepSummary:
    """What a sweep found: one row per checkpoint (``ROW_KEYS``), the recommendation, and which
    checkpoints this sweep computed or reused."""

    rows: list
    recommended: Optional[dict]
    output_dir: Path
    computed: list = field(default_factory=list)
    reused: list = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for row in self.rows if row["status"] != "ok")


def resolve_checkpoints(config: SweepConfig) -> list[Checkpoint]:
    """The checkpoints to sweep, in step order (see ``checkpoints.py``)."""
    if config.checkpoints:
        found = explicit_checkpoints(config.checkpoints)
    elif config.run_dir is not None:
        found = discover_checkpoints(config.run_dir)
    else:
        raise ProbeInputError("give a run folder or --checkpoints DIR [DIR ...]")
    return select_steps(found, config.steps)


def output_dir(config: SweepConfig, checkpoints: Sequence[Checkpoint]) -> Path:
    """Where summaries go: ``out``, else the run folder (the first checkpoint's parent)."""
    folder = Path(config.out) if config.out else Path(config.run_dir or checkpoints[0].path.parent)
    if config.out:
        folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise ProbeInputError(f"{str(folder)!r} is read-only; pass --out DIR for the results")
    return folder


def record_path(config: SweepConfig, checkpoint: Checkpoint) -> Path:
    """``probattr.json`` beside the checkpoint, or under ``out/<checkpoint name>/``."""
    folder = Path(config.out) / checkpoint.name if config.out else checkpoint.path
    return folder / RESULTS_FILE


def read_record(path: Path) -> Optional[dict]:
    """A record written before, or ``None`` when there is none (or it is unreadable)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_reusable(record: Optional[dict], config: SweepConfig) -> bool:
    """A finished record made with the same settings, prompt set and estimator revision."""
    if record is None or record.get("status") != "ok" or record.get("estimator_revision") != ESTIMATOR_REVISION:
        return False
    try:
        settings = ProbeSettings(**record.get("settings", {}))
    except (TypeError, ValueError):  # written by another version: recompute
        return False
    return (settings.result_key(), record.get("prompt_set_hash")) == config.key


def probe_checkpoint(config: SweepConfig, checkpoint: Checkpoint) -> dict:
    """Load one checkpoint, probe it, write its record atomically; failures are recorded."""
    import time

    from .loading import has_tokenizer_files, load_model_and_tokenizer

    began = time.perf_counter()
    try:
        tokenizer_dir = None
        if not has_tokenizer_files(checkpoint.path):
            if config.tokenizer is None:
                raise ProbeInputError(f"{checkpoint.name} has no tokenizer files; pass --tokenizer DIR")
            tokenizer_dir = config.tokenizer
        model, tokenizer = load_model_and_tokenizer(checkpoint.path, device=config.device, dtype=config.dtype,
                                                    tokenizer_dir=tokenizer_dir,
                                                    trust_remote_code=config.trust_remote_code)
        run = run_probes(model, tokenizer, config.prompts, config.responses, config.settings, step=checkpoint.step)
        del model
    except Exception as error:  # noqa: BLE001 - a broken checkpoint is recorded, the others go on
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        run = ProbeRun(step=checkpoint.step, seconds=time.perf_counter() - began,
                       error=f"{type(error).__name__}: {message}")
    path = record_path(config, checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    return run_record(run, config.prompts, config.response_mode, config.settings, path.parent, write=True,
                      responses=config.responses)


def run_sweep(config: SweepConfig, console=None) -> Optional[SweepSummary]:
    """Sweep the checkpoints; returns the summary on rank 0 (``None`` on other ranks)."""
    from rich.console import Console

    console = console or Console()
    checkpoints = resolve_checkpoints(config)
    summary_dir = output_dir(config, checkpoints)
    rank, world_size, created = _process_group()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one progress bar: ours
    try:
        computed, reused = [], []
        mine = checkpoints[rank::world_size]
        with _progress(console, len(mine), enabled=config.progress and rank == 0) as advance:
            for checkpoint in mine:
                if is_reusable(read_record(record_path(config, checkpoint)), config):
                    reused.append(checkpoint.step)
                else:
                    probe_checkpoint(config, checkpoint)
                    computed.append(checkpoint.step)
                advance(checkpoint.name)
        computed, reused = _merge_lists(computed, world_size), _merge_lists(reused, world_size)
        if rank != 0:
            return None
        summary = summarise(config, checkpoints, summary_dir, computed, reused)
        _log(config, checkpoints, summary_dir)
        if config.report:
            from .report import write_report

            records = load_records(checkpoints, lambda c: record_path(config, c))
            write_report(summary_dir, summary.rows, records, summary.recommended, title=str(summary_dir.resolve()))
        print_summary(summary, console)
        return summary
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def load_records(checkpoints: Sequence[Checkpoint], path_of) -> dict:
    """``{checkpoint name: record}`` for the checkpoints whose record ``path_of(checkpoint)`` exists."""
    records = {}
    for checkpoint in checkpoints:
        record = read_record(path_of(checkpoint))
        if record is not None:
            records[checkpoint.name] = record
    return records


def collect_rows(checkpoints: Sequence[Checkpoint], records: dict, reused: Sequence[int] = ()) -> list[dict]:
    """One summary row (``ROW_KEYS``) per checkpoint, from its record (``failed`` without one)."""
    losses = eval_losses(checkpoints)
    rows = []
    for checkpoint in checkpoints:
        record = records.get(checkpoint.name) or {"status": "failed", "error": "no probattr.json record"}
        summary = record.get("summary", {})
        row = {"step": checkpoint.step, "checkpoint": checkpoint.name, "status": record["status"],
               "error": record.get("error")}
        row.update({key: summary.get(key) for key in (*SUMMARY_KEYS, "invalid_prompts")})
        row.update(eval_loss=losses.get(checkpoint.step), seconds=record.get("probe_seconds"),
                   reused=checkpoint.step in reused)
        rows.append(row)
    return rows


def summarise(config: SweepConfig, checkpoints: Sequence[Checkpoint], folder: Path, computed, reused) -> SweepSummary:
    """Rows from the records on disk, the recommendation, and the CSV / JSON summaries (atomic)."""
    rows = collect_rows(checkpoints, load_records(checkpoints, lambda c: record_path(config, c)), reused)
    recommended = recommend(rows)
    write_json_atomic(folder / SUMMARY_JSON, {"recommended": recommended, "tie_break": "earliest step",
                                              "rows": rows})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ROW_KEYS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(folder / SUMMARY_CSV, buffer.getvalue())
    return SweepSummary(rows=rows, recommended=recommended, output_dir=folder, computed=computed, reused=reused)


def report_run(run_dir, out=None) -> Path:
    """Write the HTML report of a run folder from the ``probattr.json`` records of its checkpoints
    (written by a sweep, or by the callback during training); returns the report's path."""
    from .report import write_report

    checkpoints = discover_checkpoints(run_dir)
    folder = Path(out) if out else Path(run_dir)
    records = load_records(checkpoints, lambda c: (folder / c.name if out else c.path) / RESULTS_FILE)
    if not records:
        raise ProbeInputError(f"no probattr.json in the checkpoints of {str(run_dir)!r}: run a sweep first")
    rows = collect_rows(checkpoints, records)
    folder.mkdir(parents=True, exist_ok=True)
    return write_report(folder, rows, records, recommend(rows), title=str(Path(run_dir).resolve()))


def recommend(rows: Sequence[dict]) -> Optional[dict]:
    """The ``ok`` row with the fewest noise tokens, the earliest on ties; ``None`` if none is ok."""
    candidates = [r for r in rows if r["status"] == "ok" and r["noise_tokens"] is not None]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: (r["noise_tokens"], r["step"]))
    return {"step": best["step"], "checkpoint": best["checkpoint"]}


def eval_losses(checkpoints: Sequence[Checkpoint]) -> dict:
    """``{step: eval_loss}`` from the checkpoints' ``trainer_state.json`` log histories."""
    losses = {}
    for checkpoint in checkpoints:
        try:
            state = json.loads((checkpoint.path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for entry in state.get("log_history", []):
            if "eval_loss" in entry and "step" in entry:
                losses[entry["step"]] = entry["eval_loss"]
    return losses


def _log(config: SweepConfig, checkpoints: Sequence[Checkpoint], folder: Path) -> None:
    """Write every checkpoint's record to the sinks at its step, in step order."""
    sinks = []
    if "tensorboard" in config.report_to:
        from .sinks.tensorboard import TensorBoardSink

        sinks.append(TensorBoardSink(log_dir=str(folder / "runs" / "probattr-sweep")))
    if "wandb" in config.report_to:
        from .sinks.wandb import WandbSink

        sinks.append(WandbSink(run_name=f"probattr-sweep {folder.name}", dir=str(folder)))
    errors = 0
    try:
        for checkpoint in checkpoints:
            record = read_record(record_path(config, checkpoint))
            if record is None:
                continue
            errors += record["status"] != "ok"
            run = ProbeRun(step=checkpoint.step, results=[ProbeResult.from_dict(r) for r in record["results"]],
                           seconds=record["probe_seconds"], error=record["error"])
            entry = probe_record(run, config.settings, errors=errors)
            for sink in sinks:
                sink.write(entry)
    finally:
        for sink in sinks:
            sink.close()


def print_summary(summary: SweepSummary, console) -> None:
    """A table of the rows with the recommendation marked."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"sweep of {summary.output_dir}", title_justify="left")
    for name in ("step", "status", "noise", "noise frac", "mean AS", "H ctx", "KL", "eval loss", ""):
        table.add_column(name, justify="left" if name in ("status", "") else "right")
    best = summary.recommended["step"] if summary.recommended else None

    def number(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    for row in summary.rows:
        table.add_row(str(row["step"]), row["status"],
                      "-" if row["noise_tokens"] is None else str(row["noise_tokens"]), number(row["noise_fraction"]),
                      number(row["mean_attribution"]), number(row["mean_entropy_context"]), number(row["mean_kl"]),
                      number(row["eval_loss"], 4), "<- best" if row["step"] == best else "",
                      style="bold green" if row["step"] == best else ("red" if row["status"] != "ok" else ""))
    console.print(table)
    if summary.recommended:
        console.print(f"recommended: [bold green]{escape(summary.recommended['checkpoint'])}[/] (fewest noise tokens; "
                      "ties go to the earliest step)")
    for row in summary.rows:
        if row["status"] != "ok":
            console.print(f"[red]{escape(row['checkpoint'])} failed:[/] {escape(str(row['error']))}")
    console.print(f"computed {len(summary.computed)}, reused {len(summary.reused)}; summaries in "
                  f"{summary.output_dir / SUMMARY_CSV} and {SUMMARY_JSON}")


def _process_group() -> tuple[int, int, bool]:
    """``(rank, world_size, created)``: joins the group torchrun / accelerate describe in the
    environment (gloo), or runs alone."""
    import datetime

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=60))
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def _merge_lists(values: list, world_size: int) -> list:
    """Every rank's list, concatenated and sorted (after a barrier that all ranks reach)."""
    if world_size == 1:
        return sorted(values)
    import torch.distributed as dist

    gathered = [None] * world_size
    dist.all_gather_object(gathered, values)
    return sorted(v for part in gathered for v in part)


class _progress:
    """A rich progress bar over checkpoints (nothing when disabled)."""

    def __init__(self, console, total: int, enabled: bool) -> None:
        self.console, self.total, self.enabled = console, total, enabled

    def __enter__(self):
        if not self.enabled:
            return lambda name: None
        from rich.progress import Progress

        self._progress = Progress(console=self.console, transient=True)
        self._progress.start()
        task = self._progress.add_task("probing checkpoints", total=self.total)
        return lambda name: self._progress.update(task, advance=1, description=f"probed {name}")

    def __exit__(self, *exc):
        if self.enabled:
            self._progress.stop()
