"""A real Trainer run with report_to=["trackio"] and the callback, in its own process (trackio reads
TRACKIO_DIR when imported); prints, as JSON, the probattr/noise_tokens trackio stored per global step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from probattr_monitor import ProbAttrCallback, ProbeSettings  # noqa: E402
from tests.callbacks.helpers import PROMPTS, make_trainer  # noqa: E402


def main(out: str) -> None:
    make_trainer(out, [ProbAttrCallback(prompts=PROMPTS, settings=ProbeSettings(max_new_tokens=3), max_overhead=None)],
                                        report_to=["trackio"], max_steps=4,
                 save_steps=2, project="probattr-test", run_name="run").train()
    from trackio.sqlite_storage import SQLiteStorage

    logs = SQLiteStorage.get_logs("probattr-test", "run")
    print(json.dumps({str(log["train/global_step"]): log["probattr/noise_tokens"] for log in logs
                      if "probattr/noise_tokens" in log}))


if __name__ == "__main__":  # never at import: pytest's --doctest-modules imports every module under tests/
    main(sys.argv[1])
