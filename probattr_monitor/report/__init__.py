"""The checkpoint-selection report: one static, self-contained HTML file.

No script and no external resource: inline SVG and CSS only, so it opens offline and nothing in it
can execute. Every string that comes from data (prompts, responses, tokens, candidates, errors,
paths) is HTML-escaped; details appear on hover through native ``title`` tooltips.

Contents: the recommendation and its reason (``monitoring.decision``); which settings and prompt
set the records were made with, and which records were left out; noise tokens and eval loss
against step with the recommended checkpoint marked; the convergence statistics
(``monitoring.convergence``) against step with the settled region shaded; the entropy-against-AS
scatter of every checkpoint (noise region shaded, with axes); per prompt, a heat-map of AS with
checkpoints as rows and prompt tokens as columns.

The parts: :func:`report_run` here (which records to draw: the grouping by record key),
``page`` (the document), ``charts`` (the SVG), ``markup`` (escaping, colours, numbers)."""

from __future__ import annotations

from pathlib import Path

from ..checkpoints import discover_checkpoints
from ..errors import RunFolderError
from ..monitoring.decision import DEFAULT_RULE, recommend
from ..monitoring.record import folder_records
from ..sweep.summary import collect_rows, fixed_responses
from .page import REPORT_FILE, build_report, write_report

__all__ = ["REPORT_FILE", "build_report", "report_run", "write_report"]


def report_run(run_dir, out=None, rule: str = DEFAULT_RULE) -> Path:
    """Write the HTML report of a run folder from the ``probattr.json`` records of its checkpoints
    (written by a sweep, or by the callback during training); returns the report's path.

    Records made with different settings or prompt sets are never drawn together: the report
    shows the group with the most records (the newest step breaks ties) and names the others.
    """
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
        recommend(rows, rule, fixed_responses=fixed_responses(groups[key])),
        title=str(Path(run_dir).resolve()),
        shown=key.describe() if key else None,
        hidden=others,
    )
