"""A sweep's run: each checkpoint loaded and probed (or its record reused), the checkpoints
shared among ranks (``distributed.world``), the lock on the records' folder, and the progress
shown (the sinks the records are logged to: ``sweep.logs``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

from ..checkpoints import Checkpoint, read_trainer_state
from ..display import print_summary
from ..distributed import gather_objects, world
from ..errors import RunFolderError, one_line
from ..monitoring.record import CheckpointRecord, RecordKey
from ..monitoring.run import ProbeRun, run_probes
from ..probes.types.settings import ProbeSettings
from .config import LOCK_FILE, SweepConfig, SweepSummary, output_dir, read_record, record_folder, resolve_checkpoints
from .logs import log_records
from .summary import load_records, say_what_the_recommendation_sees, summarise


def probe_checkpoint(config: SweepConfig, checkpoint: Checkpoint, key: RecordKey,
                     present: Optional[CheckpointRecord] = None,
                     plan: Optional[Callable[[Any, Any], ProbeSettings]] = None) -> tuple[CheckpointRecord, str]:
    """Load one checkpoint and either reuse ``present`` (its stored record) or probe it and write
    its record atomically; returns ``(record, outcome)``, outcome ``"reused"``, ``"written"`` or
    ``"unsaved"`` (or ``"vanished"``: the checkpoint was deleted meanwhile, nothing is written).

    ``present`` is reused only when it is ``ok``, made with ``key`` and measured on these weights
    of this checkpoint (``CheckpointRecord.measured``: name, step and the weights' fingerprint, which is
    why the model is loaded even to reuse a record). A broken checkpoint gives a ``failed`` record.
    A record that cannot be written comes back ``failed`` with the reason (``"unsaved"``), its
    numbers kept, so the summary can still show it; the sweep goes on with the other checkpoints.
    ``plan(model, tokenizer)``, when given, returns the settings of a run that is not reused (the
    watcher's share, ``monitoring.fitting``): the record holds those settings, so it says what ran."""
    import time

    from ..loading import has_tokenizer_files, is_adapter, load_model_and_tokenizer
    from ..monitoring.provenance import provenance
    from .config import check_reference_vocabulary

    began = time.perf_counter()
    settings = config.settings
    source: dict[str, Optional[str]] = (
        {"base_model": config.base_model, "adapter": str(checkpoint.path)} if is_adapter(checkpoint.path) else {})
    from ..loading import resolve_device

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
        check_reference_vocabulary(config, tokenizer, checkpoint.name)
        info = provenance(model, config.settings, base_model=source.get("base_model"), adapter=source.get("adapter"))
        if present is not None and present.is_reusable(key) and present.measured(checkpoint.name, checkpoint.step,
                                                                                 info["weights"]):
            return present, "reused"
        settings = plan(model, tokenizer) if plan is not None else config.settings
        run = run_probes(model, tokenizer, config.prompts, config.responses, settings, step=checkpoint.step,
                         info=info, guard=config.guard)
        info = run.provenance or info
        del model
    except Exception as error:  # noqa: BLE001 - a broken checkpoint is recorded, the others go on
        run = ProbeRun(step=checkpoint.step, seconds=time.perf_counter() - began, error=one_line(error))
    record = CheckpointRecord.from_run(run, config.prompt_set, settings, checkpoint.name, provenance=info)
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
    if rank == 0:
        say_what_the_recommendation_sees(config, checkpoints, console)
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
            log_records(config, checkpoints, records, summary.rows, keys)
            if config.report:
                from ..report import write_report

                matching = {name: r for name, r in records.items() if r.matches(keys[name])}
                write_report(summary_dir, summary.rows, matching, summary.recommended,
                             title=str(summary_dir.resolve()))
        print_summary(summary, console)
        return summary
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _process_group() -> tuple[int, int, bool]:
    """``(rank, world_size, created)``: joins the group torchrun / accelerate describe in the
    environment (gloo), or runs alone (``distributed.world``)."""
    import datetime

    import torch.distributed as dist

    if world()[1] == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=60))
        return (*world(), True)
    return (*world(), False)


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
        self._handle: Any = None

    def __enter__(self):
        error = None
        if self.rank == 0:
            fcntl: Any
            try:
                import fcntl
            except ImportError:  # not POSIX: no lock
                fcntl = None
            if fcntl is not None:
                self._handle = _open_lock_file(self.path)
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


def _open_lock_file(path: Path):
    """The lock file, opened for appending without following a symlink (a dangling one would create
    a file outside the run), created with the umask's mode.

    Raises:
        RunFolderError: something other than a regular file stands at ``path``, named.
    """
    import stat

    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as error:
        kind = "a symlink" if path.is_symlink() else "a folder" if path.is_dir() else "not a regular file"
        raise RunFolderError(f"the sweep's lock file {str(path)!r} is {kind} ({one_line(error)}); "
                             "remove it, or pass --out DIR") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise RunFolderError(f"the sweep's lock file {str(path)!r} is not a regular file; remove it, or pass --out DIR")
    return os.fdopen(descriptor, "a+", encoding="utf-8")


def _merge_lists(values: list, world_size: int) -> list:
    """Every rank's list, concatenated and sorted (after a barrier that all ranks reach)."""
    return sorted(v for part in _gathered(values, world_size) for v in part)


def _gathered(value, world_size: int) -> list:
    """``[value of rank 0, value of rank 1, ...]`` (``distributed.gather_objects``; ``[value]`` alone)."""
    return [value] if world_size == 1 else gather_objects(value)


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
