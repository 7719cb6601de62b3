"""Files that must never be seen half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically.

    The text goes to a temporary file in the same folder, is flushed and fsynced, then renamed over
    ``path`` (``os.replace`` is atomic on POSIX and Windows): a reader sees the old file or the new
    one, never a partial one, even if the process is killed mid-write. The file gets the mode a
    plain ``open`` would give it (``0o666`` less the process umask), like the Trainer's own files,
    not the ``0o600`` of a temporary file.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path, data: Any) -> None:
    """:func:`write_text_atomic` of ``data`` as strict JSON (no NaN), indented, UTF-8."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
