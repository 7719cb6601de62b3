"""Post-hoc sweeps: the probes over every saved checkpoint, resumable, logged like the callback.

Per checkpoint (in step order) the sweep loads the model, runs :func:`monitoring.run.run_probes` (the
callback's code path) and writes ``probattr.json`` atomically, keyed by the settings and the
prompt-set hash. A rerun reuses records whose key matches and whose status is ``"ok"``, retries
failed ones and recomputes stale ones; a sweep killed at any moment leaves whole files only, and
a rerun finishes the rest. Under ``torchrun`` / ``accelerate launch`` the checkpoints are split
across processes (round robin), and rank 0 merges, logs and summarises.

Outputs (into the run folder, or ``out``): ``sweep_summary.csv`` and ``sweep_summary.json``
(``{"recommended": {"step", "checkpoint", "rule", "reason"}, "rows": [...]}``), and the HTML
report. Summaries use
only records made with this sweep's settings and prompt set (:class:`~monitoring.record.RecordKey`);
a sweep holds a lock on the folder it writes records into, so two sweeps never mix their records.
The recommendation follows ``monitoring.decision`` (the rule the signal study supports), and says why.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .checkpoints import Checkpoint, discover_checkpoints, explicit_checkpoints, read_trainer_state, select_steps
from .errors import ProbeInputError, RunFolderError, one_line
from .monitoring.decision import DEFAULT_RULE, recommend
from .monitoring.metrics import DRIFT_KEYS, SUMMARY_KEYS
from .monitoring.record import PromptSet, RecordKey, RunRecord, find_record, folder_records
from .monitoring.run import ProbeRun, guard_values, probe_record, run_probes
from .monitoring.statistics import drift
from .probes.result import ProbeResult
from .probes.settings import ProbeSettings
from .probes.values import is_finite_number
from .prompts import paper_prompts
from .storage import write_json_atomic, write_text_atomic

SUMMARY_CSV, SUMMARY_JSON = "sweep_summary.csv", "sweep_summary.json"
ROW_KEYS = ("step", "checkpoint", "status", "error", *SUMMARY_KEYS, *DRIFT_KEYS, "invalid_prompts", "eval_loss",
            "seconds", "reused", "prompt_log_p")
CSV_KEYS = ROW_KEYS[:-1]  # the per-prompt list stays in the JSON summary
LOCK_FILE = ".probattr-sweep.lock"


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
        guard: ``(prompt, response)`` pairs scored for ``log P(r | p)`` only (the guard set).
        settings: :class:`ProbeSettings`.
        report_to: ``"tensorboard"`` and/or ``"wandb"``.
        rule: the recommendation rule (``monitoring.decision.RULES``).
        dtype: the dtype checkpoints are probed in; ``None`` (default): each checkpoint's own
            (``config.json``), as the callback probed it during training.
        base_model: the base model of adapter checkpoints (a folder or a ``.gguf`` file), when
            their ``adapter_config.json`` does not name a local one.
    """

    run_dir: Optional[str] = None
    checkpoints: Optional[Sequence[str]] = None
    steps: Optional[Sequence[int]] = None
    out: Optional[str] = None
    tokenizer: Optional[str] = None
    prompts: Sequence[str] = field(default_factory=paper_prompts)
    responses: Optional[Sequence] = None
    guard: Optional[Sequence] = None
    settings: ProbeSettings = field(default_factory=lambda: ProbeSettings(progress=False))
    report_to: Sequence[str] = ()
    device: str = "auto"
    dtype: Optional[str] = None
    trust_remote_code: bool = False
    progress: bool = True
    report: bool = True
    rule: str = DEFAULT_RULE
    base_model: Optional[str] = None

    @property
    def prompt_set(self) -> PromptSet:
        return PromptSet.of(self.prompts, self.responses, guard=self.guard)

    def key_for(self, checkpoint: Checkpoint) -> RecordKey:
        """What a record of ``checkpoint`` must match to be reused or summarised by this sweep:
        the settings, the prompt set, the dtype it is probed in and the policy its vocabulary gets."""
        from .loading import checkpoint_profile

        own_dtype, vocab_size = checkpoint_profile(checkpoint.path, self.base_model)
        policy = self.settings.policy_for(vocab_size) if vocab_size is not None else None
        return RecordKey.of(self.settings, self.prompt_set, self.dtype or own_dtype or "float32", policy)


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


def frozen_by_the_run(checkpoints: Sequence[Checkpoint], prompts: Sequence) -> Optional[tuple[list, Optional[list]]]:
    """``(responses, guard)`` the callback froze for ``prompts`` in these checkpoints' records (the
    latest ``ok`` fixed-mode record whose prompts are these and whose responses are all frozen), so
    a sweep of a run the callback probed scores the same responses and reuses its records; ``None``
    when no record has them."""
    wanted = PromptSet.of(prompts).to_dict()["prompts"]
    for checkpoint in reversed(list(checkpoints)):
        for record in folder_records(checkpoint.path):
            prompt_set = record.prompt_set
            responses = prompt_set.get("responses")
            if record.ok and prompt_set.get("response_mode") == "fixed" and prompt_set.get("prompts") == wanted \
                    and isinstance(responses, list) and all(r is not None for r in responses):
                guard = prompt_set.get("guard")
                return list(responses), None if guard is None else [tuple(pair) for pair in guard]
    return None


def resolve_checkpoints(config: SweepConfig) -> list[Checkpoint]:
    """The checkpoints to sweep, in step order (see ``checkpoints.py``)."""
    if config.checkpoints:
        found = explicit_checkpoints(config.checkpoints)
    elif config.run_dir is not None:
        found = discover_checkpoints(config.run_dir)
    else:
        raise RunFolderError("give a run folder or --checkpoints DIR [DIR ...]")
    return select_steps(found, config.steps)


def output_dir(config: SweepConfig, checkpoints: Sequence[Checkpoint]) -> Path:
    """Where summaries go: ``out``, else the run folder (the first checkpoint's parent)."""
    folder = Path(config.out) if config.out else Path(config.run_dir or checkpoints[0].path.parent)
    if config.out:
        folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise RunFolderError(f"{str(folder)!r} is read-only; pass --out DIR for the results")
    return folder


def record_folder(config: SweepConfig, checkpoint: Checkpoint) -> Path:
    """Where a checkpoint's records live: beside it, or under ``out/<checkpoint name>/``."""
    return Path(config.out) / checkpoint.name if config.out else checkpoint.path


def read_record(config: SweepConfig, checkpoint: Checkpoint, key: RecordKey) -> Optional[RunRecord]:
    """The checkpoint's record made with ``key`` (:meth:`SweepConfig.key_for`), else its
    ``probattr.json`` (made with another key), else ``None`` (see ``monitoring.record.find_record``)."""
    return find_record(record_folder(config, checkpoint), key)


def probe_checkpoint(config: SweepConfig, checkpoint: Checkpoint, key: RecordKey,
                     present: Optional[RunRecord] = None) -> tuple[RunRecord, str]:
    """Load one checkpoint and either reuse ``present`` (its stored record) or probe it and write
    its record atomically; returns ``(record, outcome)``, outcome ``"reused"``, ``"written"`` or
    ``"unsaved"`` (or ``"vanished"``: the checkpoint was deleted meanwhile, nothing is written).

    ``present`` is reused only when it is ``ok``, made with ``key`` and measured on these weights
    of this checkpoint (``RunRecord.measured``: name, step and the weights' fingerprint, which is
    why the model is loaded even to reuse a record). A broken checkpoint gives a ``failed`` record.
    A record that cannot be written comes back ``failed`` with the reason (``"unsaved"``), its
    numbers kept, so the summary can still show it; the sweep goes on with the other checkpoints."""
    import time

    from .loading import has_tokenizer_files, is_adapter, load_model_and_tokenizer
    from .monitoring.provenance import provenance

    began = time.perf_counter()
    source: dict[str, Optional[str]] = (
        {"base_model": config.base_model, "adapter": str(checkpoint.path)} if is_adapter(checkpoint.path) else {})
    from .loading import resolve_device

    info: dict = {"dtype": key.dtype, "policy": key.policy, "device": resolve_device(config.device),
                  **source}  # what was asked
    try:
        read_trainer_state(checkpoint.path)  # a trainer_state.json of the wrong shape: this checkpoint fails
        tokenizer_dir = None
        if not has_tokenizer_files(checkpoint.path):
            if config.tokenizer is None and not is_adapter(checkpoint.path):
                raise RunFolderError(f"{checkpoint.name} has no tokenizer files; pass --tokenizer DIR")
            tokenizer_dir = config.tokenizer
        model, tokenizer = load_model_and_tokenizer(checkpoint.path, device=config.device, dtype=key.dtype,
                                                    tokenizer_dir=tokenizer_dir,
                                                    trust_remote_code=config.trust_remote_code,
                                                    base_model=config.base_model)
        info = provenance(model, config.settings, base_model=source.get("base_model"), adapter=source.get("adapter"))
        if present is not None and present.is_reusable(key) and present.measured(checkpoint.name, checkpoint.step,
                                                                                 info["weights"]):
            return present, "reused"
        run = run_probes(model, tokenizer, config.prompts, config.responses, config.settings, step=checkpoint.step,
                         info=info, guard=config.guard)
        info = run.provenance or info
        del model
    except Exception as error:  # noqa: BLE001 - a broken checkpoint is recorded, the others go on
        run = ProbeRun(step=checkpoint.step, seconds=time.perf_counter() - began, error=one_line(error))
    record = RunRecord.from_run(run, config.prompt_set, config.settings, checkpoint.name, provenance=info)
    folder = record_folder(config, checkpoint)
    path = folder
    if not checkpoint.path.is_dir():  # deleted while it was probed (save_total_limit): write nothing there
        record.status = "failed"
        record.error = f"{checkpoint.name} was deleted while it was probed"
        return record, "vanished"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = record.save(folder)
    except OSError as error:
        record.status = "failed"
        record.error = f"could not write {path} ({one_line(error)}); pass --out DIR to write records elsewhere"
        return record, "unsaved"
    return record, "written"


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
        with records_lock(summary_dir, rank, world_size):
            computed: list[int] = []
            reused: list[int] = []
            unsaved: dict = {}
            keys = {c.name: config.key_for(c) for c in checkpoints}  # reads each config once
            mine = checkpoints[rank::world_size]
            with _progress(console, len(mine), enabled=config.progress and rank == 0) as advance:
                for checkpoint in mine:
                    key = keys[checkpoint.name]
                    record, outcome = probe_checkpoint(config, checkpoint, key, read_record(config, checkpoint, key))
                    (reused if outcome == "reused" else computed).append(checkpoint.step)
                    if outcome == "unsaved":
                        unsaved[checkpoint.name] = record
                    advance(checkpoint.name)
            computed, reused = _merge_lists(computed, world_size), _merge_lists(reused, world_size)
            unsaved = _merge_dicts(unsaved, world_size)
            if rank != 0:
                return None
            records = {**load_records(checkpoints, lambda c: read_record(config, c, keys[c.name])), **unsaved}
            summary = summarise(config, checkpoints, summary_dir, computed, reused, records, keys)
            _log(config, checkpoints, records, summary.rows, keys)
            if config.report:
                from .report import write_report

                matching = {name: r for name, r in records.items() if r.matches(keys[name])}
                write_report(summary_dir, summary.rows, matching, summary.recommended,
                             title=str(summary_dir.resolve()))
        print_summary(summary, console)
        return summary
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def load_records(checkpoints: Sequence[Checkpoint], record_of) -> dict[str, RunRecord]:
    """``{checkpoint name: record}`` for the checkpoints for which ``record_of(checkpoint)`` finds one."""
    records = {}
    for checkpoint in checkpoints:
        record = record_of(checkpoint)
        if record is not None:
            records[checkpoint.name] = record
    return records


def collect_rows(checkpoints: Sequence[Checkpoint], records: dict, keys: Optional[dict] = None,
                 reused: Sequence[int] = ()) -> list[dict]:
    """One summary row (``ROW_KEYS``) per checkpoint, from its record; a checkpoint with no record,
    or only one made with another key than ``keys[name]`` (when given), is ``failed``. The drift
    columns compare each ``ok`` record with the previous ``ok`` one (``monitoring.statistics``)."""
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
                   **{name: None for name in (*SUMMARY_KEYS, *DRIFT_KEYS, "invalid_prompts")}, "seconds": None,
                   "prompt_log_p": None}
        else:
            results = [ProbeResult.from_dict(r) for r in record.results]
            changes: dict[str, Any] = drift(previous, results) if previous else dict.fromkeys(DRIFT_KEYS)
            previous = results if record.ok and results else previous
            row = {
                "step": checkpoint.step,
                "checkpoint": checkpoint.name,
                "status": record.status,
                "error": record.error,
                **{name: record.summary.get(name) for name in (*SUMMARY_KEYS, "invalid_prompts")},
                **changes,
                "seconds": record.probe_seconds,
                "prompt_log_p": guard_values(results, record.guard_log_p),
            }
        row.update(eval_loss=losses.get(checkpoint.step), reused=checkpoint.step in reused)
        rows.append({name: row[name] for name in ROW_KEYS})
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
    writer = csv.DictWriter(buffer, fieldnames=CSV_KEYS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(folder / SUMMARY_CSV, buffer.getvalue())
    return SweepSummary(rows=rows, recommended=recommended, output_dir=folder, computed=computed, reused=reused)


def report_run(run_dir, out=None, rule: str = DEFAULT_RULE) -> Path:
    """Write the HTML report of a run folder from the ``probattr.json`` records of its checkpoints
    (written by a sweep, or by the callback during training); returns the report's path.

    Records made with different settings or prompt sets are never drawn together: the report
    shows the group with the most records (the newest step breaks ties) and names the others.
    """
    from .report import write_report

    checkpoints = discover_checkpoints(run_dir)
    folder = Path(out) if out else Path(run_dir)
    groups: dict = {}
    for checkpoint in checkpoints:
        for record in folder_records(folder / checkpoint.name if out else checkpoint.path):
            groups.setdefault(record.key, {})[checkpoint.name] = record
    if not groups:
        raise RunFolderError(f"no probattr.json in the checkpoints of {str(run_dir)!r}: run a sweep first")
    steps = {c.name: c.step for c in checkpoints}
    key = max(groups, key=lambda k: (len(groups[k]), max(steps[name] for name in groups[k])))
    others = [
        f"{len(group)} record(s) made with {k.describe() if k else 'unreadable settings'}"
        for k, group in groups.items()
        if k != key
    ]
    rows = collect_rows(checkpoints, groups[key], {c.name: key for c in checkpoints})
    folder.mkdir(parents=True, exist_ok=True)
    return write_report(
        folder,
        rows,
        groups[key],
        recommend(rows, rule, fixed_responses=_fixed(groups[key])),
        title=str(Path(run_dir).resolve()),
        shown=key.describe() if key else None,
        hidden=others,
    )


def _fixed(records: dict) -> bool:
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
        except ProbeInputError:
            continue
        history = (state or {}).get("log_history", [])
        for entry in history if isinstance(history, list) else []:
            if isinstance(entry, dict) and is_finite_number(entry.get("eval_loss")) and "step" in entry:
                losses[entry["step"]] = float(entry["eval_loss"])
    return losses



def _log(config: SweepConfig, checkpoints: Sequence[Checkpoint], records: dict, rows: Sequence[dict],
         keys: dict) -> None:
    """Write every checkpoint's record made with this sweep's key to the sinks at its step, in
    step order, with the drift its summary row holds; a failing sink is reported and disabled,
    never fatal."""
    if not config.report_to:
        return
    folder = Path(config.out) if config.out else Path(config.run_dir or checkpoints[0].path.parent)
    sinks = open_guarded_sinks(config, tensorboard_dir=str(folder / "runs" / "probattr-sweep"), wandb_dir=str(folder),
                               run_name=f"probattr-sweep {folder.name}")
    errors = 0
    rows_by_name = {row["checkpoint"]: row for row in rows}
    try:
        for checkpoint in checkpoints:
            record = records.get(checkpoint.name)
            if record is None or not record.matches(keys[checkpoint.name]):
                continue
            errors += not record.ok
            log_record(sinks, config.settings, checkpoint, record, rows_by_name.get(checkpoint.name, {}), errors)
    finally:
        sinks.close()


def open_guarded_sinks(config: SweepConfig, tensorboard_dir: str, wandb_dir: str, run_name: str,
                       wandb_run_id: Optional[str] = None, mlflow_run_id: Optional[str] = None):
    """``GuardedSinks`` for ``config.report_to`` (see ``sinks.open_sinks``)."""
    from .sinks import GuardedSinks, open_sinks

    return GuardedSinks(open_sinks(config.report_to, tensorboard_dir=tensorboard_dir, wandb_dir=wandb_dir,
                                   wandb_run_name=run_name, wandb_run_id=wandb_run_id, mlflow_run_id=mlflow_run_id))


def log_record(sinks, settings: ProbeSettings, checkpoint: Checkpoint, record: RunRecord, row: dict,
               errors: int) -> None:
    """Write one checkpoint's record to ``sinks`` at its step, with the drift its summary ``row``
    holds and the running count of failed records ``errors``."""
    run = ProbeRun(
        step=checkpoint.step,
        results=[ProbeResult.from_dict(r) for r in record.results],
        seconds=record.probe_seconds,
        error=record.error,
        drift={key: row[key] for key in DRIFT_KEYS if row.get(key) is not None},
    )
    sinks.write(probe_record(run, settings, errors=errors))


def print_summary(summary: SweepSummary, console) -> None:
    """A table of the rows with the recommendation marked."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"sweep of {escape(str(summary.output_dir))}", title_justify="left")
    for name in ("step", "status", "noise", "noise frac", "mean AS", "H ctx", "KL", "eval loss", ""):
        table.add_column(name, justify="left" if name in ("status", "") else "right")
    best = summary.recommended["step"] if summary.recommended else None

    def number(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    for row in summary.rows:
        table.add_row(
            str(row["step"]),
            row["status"],
            "-" if row["noise_tokens"] is None else str(row["noise_tokens"]),
            number(row["noise_fraction"]),
            number(row["mean_attribution"]),
            number(row["mean_entropy_context"]),
            number(row["mean_kl"]),
            number(row["eval_loss"], 4),
            "<- best" if row["step"] == best else "",
            style="bold green" if row["step"] == best else ("red" if row["status"] != "ok" else ""),
        )
    console.print(table)
    if summary.recommended:
        console.print(
            f"recommended: [bold green]{escape(summary.recommended['checkpoint'])}[/] - "
            f"{escape(summary.recommended['reason'])}"
        )
    for row in summary.rows:
        if row["status"] != "ok":
            console.print(f"[red]{escape(row['checkpoint'])} failed:[/] {escape(str(row['error']))}")
    console.print(
        f"computed {len(summary.computed)}, reused {len(summary.reused)}; summaries in "
        f"{escape(str(summary.output_dir / SUMMARY_CSV))} and {SUMMARY_JSON}"
    )


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


def _merge_dicts(values: dict, world_size: int) -> dict:
    """Every rank's dict, merged (after a barrier that all ranks reach)."""
    return {k: v for part in _gathered(values, world_size) for k, v in part.items()}


class records_lock:
    """An exclusive lock on ``folder/.probattr-sweep.lock`` (``flock``; released when the process
    ends, even on SIGKILL), held by rank 0 while a sweep writes records: a second sweep of the same
    folder stops at once with one line instead of mixing its records with this one's. Every rank
    learns whether rank 0 got it."""

    def __init__(self, folder: Path, rank: int, world_size: int) -> None:
        self.path, self.rank, self.world_size = Path(folder) / LOCK_FILE, rank, world_size
        self._handle = None

    def __enter__(self):
        error = None
        if self.rank == 0:
            try:
                import fcntl
            except ImportError:  # not POSIX: no lock
                fcntl = None
            if fcntl is not None:
                self._handle = open(self.path, "a+", encoding="utf-8")
                try:
                    fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    self._handle.close()
                    self._handle = None
                    error = (
                        f"another sweep is writing records in {str(self.path.parent)!r}; wait for it to finish "
                        "or pass --out DIR"
                    )
        if self.world_size > 1:
            import torch.distributed as dist

            shared = [error]
            dist.broadcast_object_list(shared, src=0)
            error = shared[0]
        if error is not None:
            raise RunFolderError(error)
        return self

    def __exit__(self, *exc):
        if self._handle is not None:
            self._handle.close()  # closing releases the flock
        return False


def _merge_lists(values: list, world_size: int) -> list:
    """Every rank's list, concatenated and sorted (after a barrier that all ranks reach)."""
    return sorted(v for part in _gathered(values, world_size) for v in part)


def _gathered(value, world_size: int) -> list:
    """``[value of rank 0, value of rank 1, ...]`` (``all_gather_object``; just ``[value]`` alone)."""
    if world_size == 1:
        return [value]
    import torch.distributed as dist

    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, value)
    return gathered


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
