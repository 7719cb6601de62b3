"""The report's page: the HTML document around the charts (``charts``), with the
recommendation, the record set shown, the rows table and the page's CSS."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from .charts import curve, guard_chart, heatmap, scatter, statistics_charts
from .markup import esc, fmt

REPORT_FILE = "probattr_report.html"


def build_report(rows: Sequence[dict], records: dict, recommended: Optional[dict], title: str,
                 shown: Optional[str] = None, hidden: Sequence[str] = ()) -> str:
    """The HTML text.

    Args:
        rows: sweep summary rows (``sweep.row_keys()``), in step order.
        records: ``{checkpoint name: CheckpointRecord (or its dict)}``, all made with one settings key and
            prompt set (the caller groups them; see ``sweep.report_run``).
        recommended: ``{"step", "checkpoint", "rule", "reason"}`` or ``None``.
        title: shown at the top (escaped).
        shown: which settings and prompt set the records were made with (shown when given).
        hidden: one line per group of records left out because another key made them.
    """
    from ..probes.types.settings import ProbeSettings

    records = {name: r.to_dict() if hasattr(r, "to_dict") else r for name, r in records.items()}
    ok = [row for row in rows if row["status"] == "ok" and row["checkpoint"] in records]
    try:
        settings = ProbeSettings.from_dict(next((records[r["checkpoint"]].get("settings", {}) for r in ok), {}))
    except ValueError:
        settings = ProbeSettings()
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        f"<title>probattr report: {esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>probattr-monitor: choosing a checkpoint</h1><p class='muted'>{esc(title)}</p>",
    ]
    if recommended:
        parts.append(f"<p class='recommended' id='recommendation'>Recommended: <b>{esc(recommended['checkpoint'])}</b> "
                     f"(step {esc(recommended['step'])}): {esc(recommended.get('reason', ''))}.</p>")
    else:
        parts.append("<p class='recommended' id='recommendation'>No checkpoint could be scored.</p>")
    if shown:
        parts.append(f"<p class='muted' id='record-set'>Records made with {esc(shown)}.</p>")
    for line in hidden:
        parts.append(f"<p class='muted hidden-records'>Not shown: {esc(line)}.</p>")
    if recommended and recommended.get("target_step") is not None:
        parts.append(f"<p class='disagree' id='disagreement'>Target and guard disagree: the lowest eval loss is "
                     f"at step {esc(recommended['target_step'])}, where the guard set regressed. Choose it if that "
                     "specialisation is wanted.</p>")
    parts.append("<h2>Noise tokens and eval loss by step</h2>")
    parts.append(curve(rows, recommended))
    parts.append(guard_chart(rows, recommended))
    parts.append(statistics_charts(rows, recommended))
    parts.append(_rows_table(rows, recommended))
    parts.append(f"<h2>Entropy against attribution score</h2><p class='muted'>Shaded: the noise region "
                 f"(|AS| &le; {esc(settings.as_band)}, {esc(settings.noise_entropy)} "
                 f"entropy &ge; {esc(settings.entropy_threshold)} nats). One colour per prompt.</p>")
    parts.append("<div class='grid'>" + "".join(scatter(row, records[row["checkpoint"]], settings) for row in ok)
                 + "</div>")
    parts.append("<h2>Attribution score per prompt token</h2><p class='muted'>Rows: checkpoints; columns: prompt "
                 "tokens; blue: negative AS, red: positive (saturating at 2 nats); outlined: noise tokens. "
                 "Hover a cell for its numbers and top candidates.</p>")
    prompts = [r["prompt"] for r in records[ok[0]["checkpoint"]]["results"]] if ok else []
    for index, prompt in enumerate(prompts):
        parts.append(heatmap(index, prompt, ok, records, recommended))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(folder, rows: Sequence[dict], records: dict, recommended: Optional[dict], title: str,
                 shown: Optional[str] = None, hidden: Sequence[str] = ()) -> Path:
    """Write :func:`build_report` to ``folder/probattr_report.html`` atomically; returns the path."""
    from ..storage import write_text_atomic

    path = Path(folder) / REPORT_FILE
    write_text_atomic(path, build_report(rows, records, recommended, title, shown, hidden))
    return path


def _rows_table(rows: Sequence[dict], recommended: Optional[dict]) -> str:
    head = (
        "step",
        "checkpoint",
        "status",
        "noise tokens",
        "noise fraction",
        "mean AS",
        "mean H context",
        "mean KL",
        "eval loss",
    )
    out = ["<table class='rows'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    best = recommended["checkpoint"] if recommended else None
    for r in rows:
        values = (
            r["step"],
            r["checkpoint"],
            r["status"] if r["status"] == "ok" else f"failed: {r['error']}",
            r["noise_tokens"],
            fmt(r["noise_fraction"]),
            fmt(r["mean_attribution"]),
            fmt(r["mean_entropy_context"]),
            fmt(r["mean_kl"]),
            fmt(r.get("eval_loss"), 4),
        )
        css = " class='best-row'" if r["checkpoint"] == best else ""
        out.append(f"<tr{css}>" + "".join(f"<td>{esc('-' if v is None else v)}</td>" for v in values) + "</tr>")
    return "".join(out) + "</table>"


_CSS = """.disagree{background:#fff8e1;border-left:4px solid #f9a825;padding:6px 10px}

body{font-family:system-ui,sans-serif;margin:24px;color:#222}h1{font-size:22px}h2{font-size:18px;margin-top:28px}
.muted{color:#666}.recommended{font-size:16px;background:#e8f5e9;padding:8px;border-left:4px solid #2e7d32}
.axis{stroke:#444;stroke-width:1}.label{font-size:11px;fill:#444}.noise{fill:#c62828}.loss{fill:#1565c0}
.noise-line{fill:none;stroke:#c62828;stroke-width:2}.noise-point{fill:#c62828}
.loss-line{fill:none;stroke:#1565c0;stroke-width:1.5;stroke-dasharray:4 3}.loss-point{fill:#1565c0}
.best{stroke:#2e7d32;stroke-width:2;stroke-dasharray:6 3}.failed{fill:#b71c1c;font-size:14px}
table.rows{border-collapse:collapse;margin-top:12px}table.rows td,table.rows th{border:1px solid #ddd;padding:3px 8px;
font-size:13px;text-align:right}.best-row{background:#e8f5e9;font-weight:bold}
.grid{display:flex;flex-wrap:wrap;gap:8px}.scatter{margin:0}.scatter figcaption{font-size:12px;text-align:center}
.noise-region{fill:#ddd}.plateau{fill:#e3f2fd}.stat{margin:0}.stat figcaption{font-size:12px;text-align:center}
.stat-line{fill:none;stroke:#6a1b9a;stroke-width:1.5}.stat-point{fill:#6a1b9a}.scroll{overflow-x:auto}.prompt{font-style:italic}
table.heatmap{border-collapse:collapse;font-size:12px}table.heatmap th{font-weight:normal;padding:2px 6px;
white-space:pre;text-align:left}td.cell{padding:2px 4px;border:1px solid #fff;white-space:pre}
td.noise{outline:2px solid #000;outline-offset:-2px}td.response{color:#555;padding-left:10px;white-space:pre}
"""
