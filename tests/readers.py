"""Read real logs back: TensorBoard event files and wandb offline run files (no mocks)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7  # LevelDB log record header: crc32c (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_tensorboard(log_dir) -> dict:
    """``{"scalars": {tag: {step: value}}, "histograms": {tag: set(steps)}, "images": {tag: set(steps)}}``.

    ``size_guidance`` 0 keeps every event (the default samples, e.g. only the last histogram).
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0,
                                                                 "tensors": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    return {
        "scalars": {tag: {e.step: e.value for e in accumulator.Scalars(tag)} for tag in tags["scalars"]},
        "histograms": {tag: {e.step for e in accumulator.Histograms(tag)} for tag in tags["histograms"]},
        "images": {tag: {e.step for e in accumulator.Images(tag)} for tag in tags["images"]},
    }


def tensorboard_scalar_steps(log_dir) -> dict:
    """``{tag: [step, ...]}``: every scalar event's step, repeats kept (a value logged twice at
    one step appears twice)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [e.step for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def read_dvclive_metric(root, name) -> list[tuple[int, float]]:
    """``[(dvclive step, value), ...]`` of one metric of a DVCLive folder (its plain TSV file)."""
    lines = (Path(root) / "plots" / "metrics" / f"{name}.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["step", name.rsplit("/", 1)[-1]], lines[0]
    return [(int(step), float(value)) for step, value in (line.split("\t") for line in lines[1:])]


def _records(data: bytes):
    """Payloads of a LevelDB-log file (wandb's ``.wandb`` framing: a 7-byte file header first)."""
    assert data[:4] == b":W&B", "not a wandb run file"
    offset, pending = 7, b""
    while offset + HEADER <= len(data):
        room = BLOCK - offset % BLOCK
        if room < HEADER:  # block trailer padding
            offset += room
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        payload = data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            yield pending + payload
            pending = b""
        elif kind == 0 and length == 0:
            offset += BLOCK - offset % BLOCK if offset % BLOCK else 0  # zero padding
        else:
            raise ValueError(f"bad record type {kind} at {offset}")


def _item_value(item):
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value") if hasattr(item, "WhichOneof") else None
    return getattr(item, kind) if kind else None


def read_wandb_history(run_file) -> list[dict]:
    """Every history row (``run.log`` call) of an offline run file, as ``{key: value}``."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for payload in _records(Path(run_file).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                path = [item.key] if item.key else list(item.nested_key)
                target = row
                for part in path[:-1]:  # a logged dict (histogram, image, table) comes back nested
                    target = target.setdefault(part, {})
                target[path[-1]] = _item_value(item)
            rows.append(row)
    return rows


def wandb_run_file(root) -> Path:
    """The single ``run-*.wandb`` file under ``root``."""
    (found,) = list(Path(root).rglob("run-*.wandb"))
    return found
