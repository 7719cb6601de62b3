"""Probe each checkpoint of a training run as it lands, in a process beside the run (``watch``).

The training loop never waits for the probes: the Trainer saves ``checkpoint-<step>`` folders,
and the watcher, in another process (on another device, or another machine sharing the folder),
probes each one with the sweep's code path (:func:`sweep.probe_checkpoint`: same settings,
records, reuse and outputs), writes its ``probattr.json``, logs it at the checkpoint's step and
rewrites ``sweep_summary.json`` / ``.csv`` and the report, so the recommendation is current after
every checkpoint.

A checkpoint is probed only when it is complete: the Trainer writes ``trainer_state.json`` last
(after the weights, optimizer and RNG state), so the folder must hold a ``trainer_state.json``
that parses with its ``global_step``, weight files that are whole (safetensors headers, ``.bin``
zip directories), and the same file
sizes and modification times at two looks at least ``settle_seconds`` apart. A checkpoint deleted
meanwhile (``save_total_limit``) is skipped.

Fixed responses (what the recommendation compares across checkpoints): the given ones, else those
the callback froze in the run's records, else the first complete checkpoint's greedy responses,
frozen as token ids, kept in the watcher's state file (``.probattr-watch.json`` beside the
summaries) with the checkpoints it has logged, so a restarted watcher scores the same responses
and neither re-probes nor re-logs what it did.

The watcher takes a share of its device's wall time as the callback takes a share of training
(``WatchConfig.max_overhead``, the callback's default; ``monitoring.overhead``): its clock starts
at the run's first checkpoint (or when it started, if later) and is kept in its state file with
the seconds it has spent (loading each checkpoint included), so a restarted watcher goes on with
the same account. Each probed checkpoint's likelihoods and guard are scored; the attribution
scores run at every position, at a seeded sample of at least half of them, or at none, as the
share has saved (``monitoring.fitting``); each record holds the settings that ran, and the
watcher keys its records by that plan. When neither half of the share pays, a checkpoint is
skipped before it is loaded (``monitoring.overhead.skips_run``; never the first of a session nor
the one at ``max_steps``), said once, and left to ``sweep``.

It stops at ``stop_step``, when training has finished (a checkpoint at the ``max_steps`` its
``trainer_state.json`` states), after ``idle_timeout`` seconds with no new checkpoint, or on
SIGINT / SIGTERM (after the checkpoint under way).

Longer than 300 lines because one polling loop and the state it keeps (the checkpoints seen
complete, their records, the sinks): its steps read top to bottom.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

from .checkpoints import Checkpoint, check_distinct_steps, named_checkpoints, recorded_step
from .errors import InputError, ProbeInputError, RunFolderError, one_line, warn_user
from .monitoring.fitting import fitted_settings
from .monitoring.overhead import (
    DEFAULT_MAX_OVERHEAD,
    OVERHEAD_TAG,
    OverheadMeter,
    check_share,
    plan_run,
    skipped_line,
    skips_run,
)
from .monitoring.record import RecordKey
from .probes.types.result import ProbeResult
from .sinks.base import resuming_trackers, with_old_run_ids
from .storage import write_json_atomic
from .sweep import (
    SweepConfig,
    frozen_by_the_run,
    log_record,
    open_guarded_sinks,
    probe_checkpoint,
    read_record,
    records_lock,
    summarise,
)

STATE_FILE = ".probattr-watch.json"
STATE_FORMAT = 1
SPENT_KEYS = ("since", "probe_seconds", "scoring_seconds", "rate")  # WatchState.spent


@dataclass
class WatchConfig:
    """What to watch and when to stop; ``sweep`` holds the probe settings, prompts and outputs.

    Attributes:
        sweep: a :class:`~probattr_monitor.sweep.SweepConfig` with ``run_dir`` set.
        poll_seconds: how often the run folder is listed.
        settle_seconds: how long a checkpoint's files must stay unchanged before it is probed.
        stop_step: stop once a checkpoint at this step or later is logged.
        idle_timeout: stop after this many seconds with no new complete checkpoint (``None``: never).
        tensorboard_dir: the TensorBoard folder to log into (default: the newest folder of
            ``RUN_DIR/runs``, where the Trainer's writer logs, else ``RUN_DIR/runs/probattr-watch``).
        run_ids: ``{tracker name: run id}``: resume these runs (the Trainer's) to log into, for
            the trackers that resume (``sinks.resuming_trackers()``: W&B, MLflow).
        max_overhead: the share of the device's wall time the probes may take (the callback's
            default, ``monitoring.overhead.DEFAULT_MAX_OVERHEAD``; module docstring); ``None``:
            every position of every checkpoint (a watcher on a device of its own that can keep up).
        wandb_run_id, mlflow_run_id: 0.3's spellings of ``run_ids={"wandb": ...}`` and
            ``run_ids={"mlflow": ...}`` (a ``FutureWarning``; removed in 0.5).
    """

    sweep: SweepConfig
    poll_seconds: float = 10.0
    settle_seconds: float = 2.0
    stop_step: Optional[int] = None
    idle_timeout: Optional[float] = None
    tensorboard_dir: Optional[str] = None
    run_ids: dict = field(default_factory=dict)
    max_overhead: Optional[float] = DEFAULT_MAX_OVERHEAD
    wandb_run_id: Optional[str] = None
    mlflow_run_id: Optional[str] = None

    def __post_init__(self) -> None:
        check_timing(self.poll_seconds, self.settle_seconds, self.idle_timeout, self.stop_step)
        self.max_overhead = check_share("max_overhead", self.max_overhead)
        if not isinstance(self.run_ids, dict):
            raise ProbeInputError(f"run_ids should map tracker names to run ids, got {self.run_ids!r}")
        self.run_ids = with_old_run_ids(self.run_ids, "WatchConfig", 4, wandb=self.wandb_run_id,
                                        mlflow=self.mlflow_run_id)
        if not all(isinstance(v, str) and v for v in self.run_ids.values()):
            raise ProbeInputError(f"run_ids should map tracker names to run ids, got {self.run_ids!r}")
        for name in self.run_ids:
            if name not in resuming_trackers():
                raise ProbeInputError(f"run_ids names {name!r}, which resumes no run; these do: "
                                      f"{', '.join(resuming_trackers())}")


def check_timing(poll, settle, idle_timeout, stop_step,
                 names: tuple = ("poll_seconds", "settle_seconds", "idle_timeout", "stop_step")) -> None:
    """The watcher's timing, checked once for Python and the command line (``names``: how the
    caller spells the four): finite seconds >= 0, a poll > 0, a stop step >= 0.

    Raises:
        ProbeInputError: naming the value and what is allowed.
    """
    for name, value in zip(names[:3], (poll, settle, idle_timeout)):
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value < float("inf")):
            raise ProbeInputError(f"{name} should be a finite number of seconds >= 0, got {value!r}")
    if poll <= 0:
        raise ProbeInputError(f"{names[0]} should be > 0 seconds, got {poll!r}")
    if stop_step is not None and (isinstance(stop_step, bool) or not isinstance(stop_step, int) or stop_step < 0):
        raise ProbeInputError(f"{names[3]} should be a step >= 0, got {stop_step!r}")


@dataclass
class WatchState:
    """What the watcher has done, saved after every checkpoint: the responses it scores; per
    logged checkpoint, its step, the ``trainer_state.json`` stamp it had (a checkpoint rewritten
    since is probed again) and the positions its share planned (``max_positions``); and the
    share's account (``spent``: the wall time its clock started at and the seconds spent)."""

    responses: Optional[list] = None
    logged: dict = field(default_factory=dict)  # name -> {"step", "stamp": [size, mtime_ns], "max_steps", ...}
    prompts: Optional[list] = None  # the prompts ``responses`` were frozen for
    spent: dict = field(default_factory=dict)  # {"since": epoch seconds, "probe_seconds", "scoring_seconds", "rate"}

    @classmethod
    def load(cls, path: Path, prompts: Sequence[str]) -> "WatchState":
        """The saved state, checked as any user-editable input: a file of the wrong shape, responses
        frozen for other prompts or of the wrong count, or a malformed ``logged`` entry is a warning
        naming the file and a fresh start, never a traceback or failed rows."""
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
            if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
                raise InputError(f"not a format-{STATE_FORMAT} watch state")
            state = cls(responses=data.get("responses"), logged=data.get("logged", {}), prompts=data.get("prompts"),
                        spent=data.get("spent", {}))
            state.check(prompts)
            return state
        except (OSError, ValueError) as error:
            warn_user(f"probattr-monitor: ignoring {path} ({one_line(error)}): starting afresh")
            return cls()

    def check(self, prompts: Sequence[str]) -> None:
        """Raise ``InputError`` naming what is wrong unless ``logged`` maps names to ``{"step": int,
        "stamp": [int, int] or null, "max_steps": int or null}`` and ``responses`` is ``None`` or one
        list of token ids per prompt, frozen for these ``prompts``."""
        if not isinstance(self.logged, dict):
            raise InputError("'logged' should be an object")
        if not (isinstance(self.spent, dict) and set(self.spent) <= set(SPENT_KEYS)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf")
                        for v in self.spent.values() if v is not None)):
            raise InputError(f"'spent' should map {', '.join(SPENT_KEYS)} to seconds >= 0, got {self.spent!r}")
        for name, entry in self.logged.items():
            stamp = entry.get("stamp") if isinstance(entry, dict) else None
            if not (isinstance(entry, dict) and _is_int(entry.get("step"))
                    and (stamp is None or (isinstance(stamp, list) and len(stamp) == 2 and all(map(_is_int, stamp))))
                    and (entry.get("max_steps") is None or _is_int(entry["max_steps"]))
                    and (entry.get("max_positions") is None or _is_int(entry["max_positions"]))
                    and isinstance(entry.get("skipped", False), bool)):
                raise InputError(f"logged entry {name!r} should be {{step, stamp, max_steps, max_positions, skipped}}, "
                                 f"got {entry!r}")
        if self.responses is None:
            return
        if self.prompts != list(prompts):
            raise InputError("its responses were frozen for other prompts")
        if not (isinstance(self.responses, list) and len(self.responses) == len(self.prompts)
                and all(isinstance(r, list) and r and all(_is_int(i) and i >= 0 for i in r) for r in self.responses)):
            raise InputError(f"'responses' should be one non-empty list of token ids per prompt ({len(prompts)})")

    def save(self, path: Path) -> None:
        """Write the watcher's state (the frozen responses, their prompts and the steps logged)
        atomically, so that a restarted watcher goes on from it."""
        write_json_atomic(path, {"format": STATE_FORMAT, "prompts": self.prompts, "responses": self.responses,
                                 "logged": self.logged, "spent": self.spent})

    def meter(self, share: float, first_checkpoint: Optional[float]) -> OverheadMeter:
        """The share's meter, going on from :attr:`spent`: its clock started at the saved wall time,
        else at ``first_checkpoint`` (the epoch seconds the run's oldest checkpoint was written) or
        now, whichever is earlier; it counts wall time (``concurrent``: training goes on while
        the watcher probes)."""
        now = time.time()
        since = self.spent.get("since") or min(now, first_checkpoint or now)
        self.spent["since"] = since
        return OverheadMeter(share, began=time.perf_counter() - max(0.0, now - since), concurrent=True,
                             probe_seconds=float(self.spent.get("probe_seconds") or 0.0),
                             scoring_seconds=float(self.spent.get("scoring_seconds") or 0.0),
                             rate=self.spent.get("rate"))

    def keep(self, meter: OverheadMeter) -> None:
        """Copy the meter's seconds and rate into :attr:`spent` (saved with the state)."""
        self.spent.update(probe_seconds=meter.probe_seconds, scoring_seconds=meter.scoring_seconds, rate=meter.rate)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def snapshot(folder: Path) -> Optional[tuple]:
    """``((name, size, mtime_ns), ...)`` of the folder's files (``None`` if it is gone)."""
    try:
        return tuple(sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                            for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".probattr")
                            and not p.name.startswith("probattr")))
    except OSError:
        return None


def incomplete(folder: Path) -> Optional[str]:
    """Why ``folder`` is not yet a complete checkpoint, or ``None``: ``trainer_state.json`` (the
    Trainer's last file) parses with a ``global_step``, and the weight files' headers check out."""
    from .loading import check_weight_files

    state_file = folder / "trainer_state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"trainer_state.json not readable yet ({one_line(error)})"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return "trainer_state.json has no global_step yet"
    try:
        check_weight_files(folder)
    except (InputError, OSError) as error:
        return one_line(error)
    return None


def _stamp(folder: Path) -> list:
    stat = (folder / "trainer_state.json").stat()
    return [stat.st_size, stat.st_mtime_ns]


def _logged_entry(checkpoint: Checkpoint, **more) -> dict:
    """The state's entry of a checkpoint handled now: its step, its ``trainer_state.json`` stamp,
    the ``max_steps`` it states, and ``more`` (the plan's ``max_positions``, or ``skipped``)."""
    return {"step": checkpoint.step, "stamp": _stamp(checkpoint.path), "max_steps": _max_steps(checkpoint.path),
            **more}


def _max_steps(folder: Path) -> Optional[int]:
    try:
        value = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8")).get("max_steps")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


class Watcher:
    """The watch loop over one run folder (see the module docstring). ``run()`` returns the
    number of checkpoints it logged; ``stop()`` (or SIGINT / SIGTERM) ends it after the
    checkpoint under way."""

    def __init__(self, config: WatchConfig, console=None) -> None:
        if config.sweep.run_dir is None:
            raise RunFolderError("watch needs a run folder")
        self.config = config
        self.run_dir = Path(config.sweep.run_dir)
        if not self.run_dir.is_dir():
            raise RunFolderError(f"run folder not found: {str(self.run_dir)!r}")
        self.console = console
        self._stop = threading.Event()
        self._seen: dict = {}  # name -> (snapshot, when first seen unchanged)
        self._pending: set = set()  # complete checkpoints not up to date (``_ready``)
        self._verified: dict = {}  # name -> the stamp at which its record matched this watcher's key
        self.meter: Optional[OverheadMeter] = None  # the share's account (max_overhead), from the first probe

    def stop(self) -> None:
        """Ask the loop to stop after the checkpoint in hand (what SIGINT and SIGTERM call)."""
        self._stop.set()

    def _say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    def run(self) -> int:
        """Poll the run folder until stopped or idle: probe each checkpoint once it is complete, log it, and
        return how many were logged."""
        config = self.config
        summary_dir = Path(config.sweep.out) if config.sweep.out else self.run_dir
        summary_dir.mkdir(parents=True, exist_ok=True)
        state_path = summary_dir / STATE_FILE
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread():
            for sig in previous:
                signal.signal(sig, lambda *_: self.stop())
        logged_now = 0
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # no "Loading weights" bar per checkpoint
        try:
            with records_lock(summary_dir, 0, 1):
                state = WatchState.load(state_path, config.sweep.prompts)
                sinks = None
                last_new = time.monotonic()
                while not self._stop.is_set():
                    if not self.run_dir.is_dir():
                        raise RunFolderError(f"the run folder {str(self.run_dir)!r} was deleted; stopping")
                    ready = self._ready(state)
                    for checkpoint in ready:
                        if self._stop.is_set() or self._past_stop_step(state):
                            break
                        sweep = self._sweep_config(state, checkpoint, state_path)
                        if sinks is None and sweep.report_to:
                            sinks = open_guarded_sinks(sweep, self._tensorboard_dir(), str(summary_dir),
                                                       f"probattr-watch {self.run_dir.name}", config.run_ids)
                        logged_now += self._probe(sweep, checkpoint, state, state_path, summary_dir, sinks)
                        last_new = time.monotonic()
                    if self._finished(state):
                        break
                    if config.idle_timeout is not None and time.monotonic() - last_new > config.idle_timeout:
                        self._say(f"probattr-monitor watch: no new checkpoint for {config.idle_timeout:g} s; stopping")
                        break
                    self._stop.wait(config.poll_seconds)
                if sinks is not None:
                    sinks.close()
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return logged_now

    def _ready(self, state: WatchState) -> list[Checkpoint]:
        """The complete checkpoints not logged yet (or rewritten since, or logged with a record this
        watcher's key does not match), in step order; ``self._pending`` names every complete
        checkpoint not up to date, settled or not, so that the watcher does not stop before them.

        Raises:
            RunFolderError: two complete checkpoints hold the same step (a symlinked checkpoint):
                the sweep's rule (``checkpoints.check_distinct_steps``).
        """
        ready = []
        now = time.monotonic()
        self._pending = set()
        complete = []
        for checkpoint in named_checkpoints(self.run_dir):
            if self._up_to_date(state, checkpoint):
                complete.append(checkpoint)
                continue
            look = snapshot(checkpoint.path)
            seen = self._seen.get(checkpoint.name)
            if look is None or incomplete(checkpoint.path) is not None:
                self._seen.pop(checkpoint.name, None)
                continue
            complete.append(checkpoint)
            self._pending.add(checkpoint.name)
            if seen is None or seen[0] != look:  # changed since the last look: the clock starts again
                seen = self._seen[checkpoint.name] = (look, now)
            if now - seen[1] >= self.config.settle_seconds:
                ready.append(checkpoint)
        check_distinct_steps([Checkpoint(recorded_step(c.path) or c.step, c.path) for c in complete
                              if c.path.is_dir()])
        return ready

    def _up_to_date(self, state: WatchState, checkpoint: Checkpoint) -> bool:
        """Logged, unchanged since (its ``trainer_state.json`` stamp), and its record made with this
        watcher's key (a restart with other settings, prompts or responses probes it again); a logged
        checkpoint that is gone stays logged."""
        done = state.logged.get(checkpoint.name)
        if done is None:
            return False
        try:
            stamp = _stamp(checkpoint.path)
        except OSError:
            return True
        if done.get("stamp") != stamp:
            return False
        if done.get("skipped"):  # skipped under the share: probed when the watcher runs without one
            return self.config.max_overhead is not None
        if self._verified.get(checkpoint.name) == stamp:
            return True
        sweep = self._with_responses(state)
        checkpoint = Checkpoint(recorded_step(checkpoint.path) or checkpoint.step, checkpoint.path)
        key = self._key(sweep, state, checkpoint)
        record = read_record(sweep, checkpoint, key)
        if record is None or not record.matches(key):
            return False
        self._verified[checkpoint.name] = stamp
        return True

    def _key(self, sweep: SweepConfig, state: WatchState, checkpoint: Checkpoint) -> RecordKey:
        """The key this watcher's record of ``checkpoint`` has: the sweep's settings, with the
        positions the share planned when it was logged under one (``max_positions``); without a
        share, the sweep's own (a sampled record is then probed again at every position)."""
        entry = state.logged.get(checkpoint.name)
        if self.config.max_overhead is None or not isinstance(entry, dict) or "max_positions" not in entry:
            return sweep.key_for(checkpoint)
        return sweep.key_for(checkpoint, sweep.settings.replace(max_positions=entry["max_positions"]))

    def _meter(self, state: WatchState) -> Optional[OverheadMeter]:
        """The share's meter (``None`` without ``max_overhead``), made at the first probe from the
        state's account, its clock from the run's oldest checkpoint (``WatchState.meter``)."""
        if self.config.max_overhead is not None and self.meter is None:
            written = []
            for checkpoint in named_checkpoints(self.run_dir):
                try:
                    written.append((checkpoint.path / "trainer_state.json").stat().st_mtime)
                except OSError:
                    continue
            self.meter = state.meter(self.config.max_overhead, min(written, default=None))
        return self.meter

    def _with_responses(self, state: WatchState) -> SweepConfig:
        """The sweep settings with the responses the watcher scores (given, else its state's)."""
        sweep = self.config.sweep
        return sweep if sweep.responses is not None else replace(sweep, responses=state.responses)

    def _past_stop_step(self, state: WatchState) -> bool:
        stop = self.config.stop_step
        return stop is not None and any(entry["step"] >= stop for name, entry in state.logged.items()
                                        if name not in self._pending)

    def _sweep_config(self, state: WatchState, checkpoint: Checkpoint, state_path: Path) -> SweepConfig:
        """The sweep settings with the responses fixed: given, frozen by the callback, saved in the
        state, or the greedy responses of ``checkpoint`` (the first one probed), saved."""
        sweep = self.config.sweep
        if sweep.responses is not None:
            return sweep
        if state.responses is not None and not self._in_vocabulary(state.responses, checkpoint):
            warn_user(f"probattr-monitor: ignoring the responses saved in {state_path}: token ids outside "
                      f"{checkpoint.name}'s vocabulary; freezing them afresh")
            state.responses = None
        if state.responses is None:
            state.prompts = list(sweep.prompts)
            frozen = frozen_by_the_run(named_checkpoints(self.run_dir), sweep.prompts)
            if frozen is not None:
                state.responses = frozen[0]
            else:
                from .loading import load_model_and_tokenizer
                from .monitoring.run import reference_responses

                model, tokenizer = load_model_and_tokenizer(checkpoint.path, device=sweep.device, dtype=sweep.dtype,
                                                            tokenizer_dir=sweep.tokenizer, base_model=sweep.base_model,
                                                            trust_remote_code=sweep.trust_remote_code)
                state.responses = reference_responses(model, tokenizer, sweep.prompts, sweep.settings)
                del model
                self._say(f"probattr-monitor watch: fixed responses frozen from {checkpoint.name}'s greedy output")
            state.save(state_path)
        return self._with_responses(state)

    def _in_vocabulary(self, responses: list, checkpoint: Checkpoint) -> bool:
        from .loading import checkpoint_profile

        try:
            vocab = checkpoint_profile(checkpoint.path, self.config.sweep.base_model)[1]
        except (InputError, OSError):
            return True  # the checkpoint's own probe reports what is wrong with it
        return vocab is None or all(i < vocab for response in responses for i in response)

    def _probe(self, sweep: SweepConfig, checkpoint: Checkpoint, state: WatchState, state_path: Path,
               summary_dir: Path, sinks) -> bool:
        """Probe (or reuse) one checkpoint, its attribution fitted into the share, log it, rewrite the
        summaries and the report, save the state; every second of it counts against the share.
        Returns whether it was logged (not skipped under the share, nor deleted meanwhile)."""
        began = time.perf_counter()
        step = recorded_step(checkpoint.path) or checkpoint.step
        checkpoint = Checkpoint(step, checkpoint.path)
        key = sweep.key_for(checkpoint)  # a record of every position is reused, whatever the share
        meter = self._meter(state)
        if meter is not None and self._skips(meter, sweep, checkpoint):
            state.logged[checkpoint.name] = _logged_entry(checkpoint, skipped=True)
            meter.skipped.append(step)
            self._say(f"probattr-monitor watch: {checkpoint.name} skipped: "
                      + (skipped_line(meter, step) if len(meter.skipped) == 1 else "max_overhead"))
            self._save(state, state_path, began, 0.0)
            self._pending.discard(checkpoint.name)
            return False
        plan = None if meter is None else (
            lambda model, tokenizer: fitted_settings(meter, model, tokenizer, sweep.prompts, sweep.responses,
                                                     sweep.settings))
        record, outcome = probe_checkpoint(sweep, checkpoint, key, read_record(sweep, checkpoint, key), plan=plan)
        if meter is not None and outcome != "reused":
            meter.record(step, record.probe_seconds, [ProbeResult.from_dict(r) for r in record.results])
        if outcome == "vanished":
            self._say(f"probattr-monitor watch: {checkpoint.name} was deleted before it was probed; skipped")
            state.logged[checkpoint.name] = {"step": step, "stamp": None}
            self._save(state, state_path, began, record.probe_seconds)
            self._pending.discard(checkpoint.name)
            return False
        state.logged[checkpoint.name] = _logged_entry(checkpoint, max_positions=record.settings.get("max_positions"))
        done = [c for c in named_checkpoints(self.run_dir)
                if c.name in state.logged and not state.logged[c.name].get("skipped")]
        done = [Checkpoint(recorded_step(c.path) or c.step, c.path) for c in done if c.path.is_dir()]
        keys = {c.name: self._key(sweep, state, c) for c in done}
        records = {c.name: r for c in done if (r := read_record(sweep, c, keys[c.name])) is not None}
        records[checkpoint.name] = record
        stale = {name for name, r in records.items() if name != checkpoint.name and not r.matches(keys[name])}
        done = [c for c in done if c.name not in stale]  # logged with other settings: no row until probed again
        records = {name: r for name, r in records.items() if name not in stale}
        summary = summarise(sweep, done, summary_dir, [], [], records, keys)
        if sinks is not None:
            row: dict = next((r for r in summary.rows if r["checkpoint"] == checkpoint.name), {})
            overhead = meter.overhead() if meter is not None else None
            log_record(sinks, sweep.settings, checkpoint, record, row, errors=sum(not r.ok for r in records.values()),
                       scalars={OVERHEAD_TAG: overhead} if overhead is not None else None)
        if sweep.report:
            from .report import write_report

            matching = {name: r for name, r in records.items() if r.matches(keys[name])}
            write_report(summary_dir, summary.rows, matching, summary.recommended, title=str(summary_dir.resolve()))
        self._save(state, state_path, began, record.probe_seconds if outcome != "reused" else 0.0)
        self._pending.discard(checkpoint.name)
        best = summary.recommended["checkpoint"] if summary.recommended else "none yet"
        self._say(f"probattr-monitor watch: {checkpoint.name} {outcome} ({record.status}{_scored(record)}); "
                  f"recommended: {best}")
        return True

    def _save(self, state: WatchState, state_path: Path, began: float, run_seconds: float) -> None:
        """Count this checkpoint's seconds outside its probe run (of ``run_seconds``, already
        counted) against the share, and save the state."""
        if self.meter is not None:
            self.meter.count_outside_run(time.perf_counter() - began - run_seconds)
            state.keep(self.meter)
        state.save(state_path)

    def _skips(self, meter: OverheadMeter, sweep: SweepConfig, checkpoint: Checkpoint) -> bool:
        """Whether this checkpoint is skipped to keep the share (``monitoring.overhead.skips_run``,
        planned before its model is loaded, from the latest run's shape): never the first probe of
        this session, nor a checkpoint at the end of training (``max_steps``), which the summary's
        recommendation should see."""
        if meter.shape is None or meter.rate is None:
            return False
        final = (limit := _max_steps(checkpoint.path)) is not None and checkpoint.step >= limit
        planned = plan_run(sweep.settings, meter.scoring_available(), meter.rate, *meter.shape)
        return skips_run(meter, planned, first=False, needed=final)

    def _finished(self, state: WatchState) -> bool:
        """Stop: a checkpoint at the stop step or later is logged (and current), or the end of
        training is logged and no complete checkpoint waits (one rewritten since it was logged is
        probed again first)."""
        if self._past_stop_step(state):  # checkpoints after the stop step are not waited for
            return True
        steps = [entry["step"] for entry in state.logged.values()]
        if not steps or self._pending:
            return False
        limits = [entry.get("max_steps") for entry in state.logged.values() if entry.get("max_steps")]
        return bool(limits) and max(steps) >= max(limits)

    def _tensorboard_dir(self) -> str:
        if self.config.tensorboard_dir:
            return self.config.tensorboard_dir
        runs = self.run_dir / "runs"
        folders = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime) \
            if runs.is_dir() else []
        return str(folders[-1] if folders else runs / "probattr-watch")


def _scored(record) -> str:
    """``"; attribution at K of N positions"`` when the record's run scored fewer than all (the
    share's plan), else ``""``."""
    scored, total = (record.summary or {}).get("positions_scored"), (record.summary or {}).get("positions_total")
    if scored is None or total is None:
        return ""
    return f"; attribution at {scored} of {total} positions (max_overhead)" if scored < total else ""


def watch(config: WatchConfig, console=None) -> int:
    """Run a :class:`Watcher` until it stops; returns the number of checkpoints it logged."""
    return Watcher(config, console=console).run()

