"""Finding and ordering saved checkpoints (the Trainer's ``checkpoint-<step>`` layout).

Checkpoints are ordered by their step *number*, never by string (``checkpoint-1000`` comes after
``checkpoint-200``). Where a folder holds ``trainer_state.json``, its ``global_step`` is the
authority: a folder whose name disagrees is logged at the recorded step, with a warning.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .errors import RunFolderError, warn_user

CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    """A model folder and the training step it holds."""

    step: int
    path: Path

    @property
    def name(self) -> str:
        """The checkpoint folder's name (``checkpoint-<step>``)."""
        return self.path.name


def read_trainer_state(folder: Path) -> Optional[dict]:
    """``folder/trainer_state.json`` as a dict; ``None`` when there is none.

    Raises:
        RunFolderError: it exists but is not valid JSON, or not a JSON object (``[]``, a number...).
    """
    path = Path(folder) / "trainer_state.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise RunFolderError(f"cannot read {path}: {error}") from None
    try:
        state = json.loads(text)
    except ValueError:
        raise RunFolderError(f"{path} is not valid JSON") from None
    if not isinstance(state, dict):
        raise RunFolderError(f"{path} should hold a JSON object, got {type(state).__name__}")
    return state


def recorded_step(folder: Path) -> Optional[int]:
    """``global_step`` from ``folder/trainer_state.json``, or ``None`` when absent, unreadable or
    of the wrong shape (the sweep then records that checkpoint as failed, see ``sweep.probe_checkpoint``)."""
    try:
        state = read_trainer_state(folder)
    except RunFolderError:
        return None
    step = (state or {}).get("global_step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _checked_step(folder: Path, named: Optional[int]) -> Optional[int]:
    recorded = recorded_step(folder)
    if recorded is not None and named is not None and recorded != named:
        warn_user(f"{folder.name}: trainer_state.json says global_step {recorded}; using {recorded}", stacklevel=3)
    return recorded if recorded is not None else named


def discover_checkpoints(run_dir) -> list[Checkpoint]:
    """The ``checkpoint-<step>`` folders of a Trainer output folder, in step order.

    Raises:
        RunFolderError: the folder is missing, or holds no checkpoint folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"run folder not found: {str(run_dir)!r}")
    found = [Checkpoint(_checked_step(c.path, c.step) or c.step, c.path) for c in named_checkpoints(run_dir)]
    if not found:
        raise RunFolderError(f"no checkpoint-<step> folders in {str(run_dir)!r} (or pass --checkpoints DIR ...)")
    return _in_step_order(found)


def named_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """The ``checkpoint-<step>`` folders of ``run_dir`` with the steps their names say, in step
    order; nothing inside them is read (a watcher lists folders that may be half-written)."""
    found = []
    for folder in run_dir.iterdir() if run_dir.is_dir() else []:
        match = CHECKPOINT_NAME.match(folder.name)
        if match and folder.is_dir():
            found.append(Checkpoint(int(match.group(1)), folder))
    return sorted(found, key=lambda c: c.step)


def explicit_checkpoints(folders: Sequence) -> list[Checkpoint]:
    """Model folders given one by one; the step comes from ``trainer_state.json``, else a
    ``checkpoint-<step>`` name, else the folder's position in the list."""
    checkpoints = []
    for index, folder in enumerate(Path(f) for f in folders):
        if not folder.is_dir():
            raise RunFolderError(f"checkpoint folder not found: {str(folder)!r}")
        match = CHECKPOINT_NAME.match(folder.name)
        step = _checked_step(folder, int(match.group(1)) if match else None)
        checkpoints.append(Checkpoint(index if step is None else step, folder))
    return _in_step_order(checkpoints)


def select_steps(checkpoints: Sequence[Checkpoint], steps: Optional[Sequence[int]]) -> list[Checkpoint]:
    """The checkpoints at ``steps`` (all when ``None``); a step with no checkpoint is an error."""
    if steps is None:
        return list(checkpoints)
    available = {c.step: c for c in checkpoints}
    missing = [s for s in steps if s not in available]
    if missing:
        raise RunFolderError(f"no checkpoint at step(s) {missing}; available steps: {sorted(available)}")
    return [available[s] for s in sorted(set(steps))]


def check_distinct_steps(checkpoints: Sequence[Checkpoint]) -> None:
    """One step, one checkpoint: the rule of the sweep and the watcher alike (a folder symlinked to
    another checkpoint, or copied, would give two rows for one step).

    Raises:
        RunFolderError: naming the steps held by several folders, and the folders.
    """
    by_step: dict = {}
    for checkpoint in checkpoints:
        by_step.setdefault(checkpoint.step, []).append(checkpoint.name)
    duplicated = {step: sorted(names) for step, names in sorted(by_step.items()) if len(names) > 1}
    if duplicated:
        where = "; ".join(f"{step}: {', '.join(names)}" for step, names in duplicated.items())
        raise RunFolderError(f"several checkpoints hold the same step(s) {sorted(duplicated)} ({where})")


def _in_step_order(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    check_distinct_steps(checkpoints)
    return sorted(checkpoints, key=lambda c: (c.step, c.name))
