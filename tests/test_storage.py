"""Atomic writes leave whole files with the mode the Trainer's own files get."""

from __future__ import annotations

import os
import stat

from probattr_monitor.storage import write_json_atomic


def test_records_get_the_process_umask_not_a_temporary_files_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "probattr.json", {"a": 1})
        assert stat.S_IMODE((tmp_path / "probattr.json").stat().st_mode) == 0o644
        os.umask(0o027)
        write_json_atomic(tmp_path / "other.json", {"a": 1})
        assert stat.S_IMODE((tmp_path / "other.json").stat().st_mode) == 0o640
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json", "probattr.json"], "no temporary file left"
