"""The checkpoint-selection report: one static, self-contained HTML file.

No script and no external resource: inline SVG and CSS only, so it opens offline and nothing in it
can execute. Every string that comes from data (prompts, responses, tokens, candidates, errors,
paths) is HTML-escaped; details appear on hover through native ``title`` tooltips.

Contents: the recommendation and its reason (``monitoring.decision``); which settings and prompt
set the records were made with, and which records were left out; noise tokens and eval loss
against step with the recommended checkpoint marked; the convergence statistics
(``monitoring.statistics``) against step with the settled region shaded; the entropy-against-AS
scatter of every checkpoint (noise region shaded, with axes); per prompt, a heat-map of AS with
checkpoints as rows and prompt tokens as columns.

Longer than 300 lines because the report is one self-contained HTML page: its data, its template and
its script are kept together so that the page and its data agree.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Optional, Sequence

from .probes.settings import SCOPE_NAMES

REPORT_FILE = "probattr_report.html"
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def esc(value) -> str:
    """HTML-escape any value for text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def as_colour(score: float, limit: float = 2.0) -> str:
    """Diverging colour for an AS: blue below 0, white at 0, red above (saturating at +-limit)."""
    t = max(-1.0, min(1.0, score / limit))
    fade = int(round(255 * (1 - abs(t))))
    return f"rgb(255,{fade},{fade})" if t > 0 else f"rgb({fade},{fade},255)"


def build_report(rows: Sequence[dict], records: dict, recommended: Optional[dict], title: str,
                 shown: Optional[str] = None, hidden: Sequence[str] = ()) -> str:
    """The HTML text.

    Args:
        rows: sweep summary rows (``sweep.ROW_KEYS``), in step order.
        records: ``{checkpoint name: CheckpointRecord (or its dict)}``, all made with one settings key and
            prompt set (the caller groups them; see ``sweep.report_run``).
        recommended: ``{"step", "checkpoint", "rule", "reason"}`` or ``None``.
        title: shown at the top (escaped).
        shown: which settings and prompt set the records were made with (shown when given).
        hidden: one line per group of records left out because another key made them.
    """
    from .probes.settings import ProbeSettings

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
    parts.append(_curve(rows, recommended))
    parts.append(_guard_chart(rows, recommended))
    parts.append(_statistics(rows, recommended))
    parts.append(_rows_table(rows, recommended))
    parts.append(f"<h2>Entropy against attribution score</h2><p class='muted'>Shaded: the noise region "
                 f"(|AS| &le; {esc(settings.as_band)}, {esc(settings.noise_entropy)} "
                 f"entropy &ge; {esc(settings.entropy_threshold)} nats). One colour per prompt.</p>")
    parts.append("<div class='grid'>" + "".join(_scatter(row, records[row["checkpoint"]], settings) for row in ok)
                 + "</div>")
    parts.append("<h2>Attribution score per prompt token</h2><p class='muted'>Rows: checkpoints; columns: prompt "
                 "tokens; blue: negative AS, red: positive (saturating at 2 nats); outlined: noise tokens. "
                 "Hover a cell for its numbers and top candidates.</p>")
    prompts = [r["prompt"] for r in records[ok[0]["checkpoint"]]["results"]] if ok else []
    for index, prompt in enumerate(prompts):
        parts.append(_heatmap(index, prompt, ok, records, recommended))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(folder, rows: Sequence[dict], records: dict, recommended: Optional[dict], title: str,
                 shown: Optional[str] = None, hidden: Sequence[str] = ()) -> Path:
    """Write :func:`build_report` to ``folder/probattr_report.html`` atomically; returns the path."""
    from .storage import write_text_atomic

    path = Path(folder) / REPORT_FILE
    write_text_atomic(path, build_report(rows, records, recommended, title, shown, hidden))
    return path


def _curve(rows: Sequence[dict], recommended: Optional[dict]) -> str:
    width, height, left, right, top, bottom = 720, 280, 56, 64, 16, 40
    points = [r for r in rows if r["noise_tokens"] is not None]
    if not points:
        return "<p>No scored checkpoint.</p>"
    steps = [r["step"] for r in rows]
    x_low, x_high = min(steps), max(steps)
    span = (x_high - x_low) or 1
    noise_low, noise_high = min(r["noise_tokens"] for r in points), max(r["noise_tokens"] for r in points)
    if noise_low == noise_high:
        noise_low, noise_high = max(0, noise_low - 1), noise_high + 1
    losses = [r["eval_loss"] for r in rows if r.get("eval_loss") is not None]

    def x(step):
        return left + (step - x_low) / span * (width - left - right)

    def y(value, high, low=0.0):
        return top + (1 - (value - low) / ((high - low) or 1)) * (height - top - bottom)

    svg = [f"<svg id='curve' class='curve' width='{width}' height='{height}' role='img' "
           f"aria-label='noise tokens and eval loss by step'>",
           f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' y2='{height - bottom}' class='axis'/>",
           f"<line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' class='axis'/>",
           f"<text x='{left - 8}' y='{top + 10}' class='label' text-anchor='end'>{noise_high}</text>",
           f"<text x='{left - 8}' y='{height - bottom}' class='label' text-anchor='end'>{noise_low}</text>",
           f"<text x='{left}' y='{height - 8}' class='label'>step {x_low}</text>",
           f"<text x='{width - right}' y='{height - 8}' class='label' text-anchor='end'>step {x_high}</text>",
           f"<text x='{left + 4}' y='{top + 10}' class='label noise'>noise tokens</text>"]
    if recommended:
        rx = x(recommended["step"])
        svg.append(f"<line id='recommended-marker' x1='{rx:.1f}' y1='{top}' x2='{rx:.1f}' y2='{height - bottom}' "
                   f"class='best'><title>recommended: {esc(recommended['checkpoint'])}</title></line>")
    path = " ".join(f"{x(r['step']):.1f},{y(r['noise_tokens'], noise_high, noise_low):.1f}" for r in points)
    svg.append(f"<polyline points='{path}' class='noise-line'/>")
    for r in points:
        svg.append(f"<circle cx='{x(r['step']):.1f}' cy='{y(r['noise_tokens'], noise_high, noise_low):.1f}' r='4' "
                   f"class='noise-point'><title>{esc(r['checkpoint'])}: {r['noise_tokens']} noise tokens</title>"
                   "</circle>")
    if losses:
        low, high = min(losses), max(losses)
        loss_points = [r for r in rows if r.get("eval_loss") is not None]
        path = " ".join(f"{x(r['step']):.1f},{y(r['eval_loss'], high, low):.1f}" for r in loss_points)
        svg.append(f"<polyline points='{path}' class='loss-line'/>")
        for r in loss_points:
            svg.append(
                f"<circle cx='{x(r['step']):.1f}' cy='{y(r['eval_loss'], high, low):.1f}' r='3' "
                f"class='loss-point'><title>{esc(r['checkpoint'])}: eval loss {r['eval_loss']:.4f}</title></circle>"
            )
        svg.append(
            f"<text x='{width - right + 6}' y='{top + 10}' class='label loss'>{high:.3f}</text>"
            f"<text x='{width - right + 6}' y='{height - bottom}' class='label loss'>{low:.3f}</text>"
            f"<text x='{width - right - 4}' y='{top + 10}' class='label loss' text-anchor='end'>eval loss</text>"
        )
    for r in rows:
        if r["status"] != "ok":
            svg.append(
                f"<text x='{x(r['step']):.1f}' y='{height - bottom - 4}' class='failed' text-anchor='middle'>"
                f"&#x2716;<title>{esc(r['checkpoint'])} failed: {esc(r['error'])}</title></text>"
            )
    svg.append("</svg>")
    return "".join(svg)


STATISTIC_CHARTS = (
    ("log_p_response", "mean log P(response | prompt)", "higher: the fixed responses are likelier"),
    ("soft_noise", "soft noise (nats)", "lower: fewer tokens that nothing pins down"),
    ("drift_attribution", "drift: mean |dAS| (nats)", "towards 0: the run has settled"),
    ("mean_replacement_entropy", "replacement entropy (nats)", "lower: responses stable under replacements"),
)


def _guard_chart(rows: Sequence[dict], recommended: Optional[dict]) -> str:
    """Guard retention against the target, per checkpoint: the mean paired change of the guard's
    log P(r|p) against the best earlier checkpoint with its 95% interval (``monitoring.regression``),
    the ``-tolerance`` line, regressed checkpoints in red; the eval loss (the target) is the
    curve above it, on the same steps."""
    from .monitoring.regression import DEFAULT_TOLERANCE, guard_comparisons

    points = [c for c in guard_comparisons(rows) if c.mean is not None and c.low is not None and c.high is not None]
    if len(points) < 1:
        return ""
    width, height, left, bottom, top = 620, 200, 60, 30, 14
    steps = [r["step"] for r in rows]
    low_step, high_step = min(steps), max(steps)
    low = min(min(float(c.low or 0.0) for c in points), -DEFAULT_TOLERANCE) - 0.05
    high = max(max(float(c.high or 0.0) for c in points), 0.0) + 0.05

    def x(step):
        return left + (step - low_step) / ((high_step - low_step) or 1) * (width - left - 10)

    def y(value):
        return top + (1 - (value - low) / (high - low)) * (height - top - bottom)

    svg = [f"<h2>Guard retention by step</h2><p class='muted'>Mean change of the guard's log P(r|p) per prompt "
           f"against the best earlier checkpoint, with its 95% interval; red: regressed with confidence (the "
           f"interval below -{DEFAULT_TOLERANCE:g} nats, dotted). Read it beside the eval loss above: the target "
           "ranks, the guard vetoes.</p>",
           f"<figure id='guard-retention'><svg width='{width}' height='{height}' role='img' "
           "aria-label='guard retention by step'>",
           f"<line x1='{left}' y1='{y(0):.1f}' x2='{width - 10}' y2='{y(0):.1f}' class='axis'/>",
           f"<line x1='{left}' y1='{y(-DEFAULT_TOLERANCE):.1f}' x2='{width - 10}' y2='{y(-DEFAULT_TOLERANCE):.1f}' "
           "class='axis' stroke-dasharray='2,3'/>",
           f"<text x='{left - 4}' y='{y(0) + 4:.1f}' class='label' text-anchor='end'>0</text>",
           f"<text x='{left - 4}' y='{y(-DEFAULT_TOLERANCE) + 4:.1f}' class='label' "
           f"text-anchor='end'>-{DEFAULT_TOLERANCE:g}</text>",
           f"<text x='{left}' y='{height - 12}' class='label'>step {low_step}</text>",
           f"<text x='{width - 10}' y='{height - 12}' class='label' text-anchor='end'>step {high_step}</text>"]
    if recommended:
        marked = recommended["step"]
        svg.append(f"<line x1='{x(marked):.1f}' y1='{top}' x2='{x(marked):.1f}' y2='{height - bottom}' class='best'/>")
    for c in points:
        colour = "#c62828" if c.regressed else "#6a1b9a"
        kind = "regressed" if c.regressed else "kept"
        mean, bottom_end, top_end = float(c.mean or 0.0), float(c.low or 0.0), float(c.high or 0.0)
        svg.append(f"<line x1='{x(c.step):.1f}' y1='{y(bottom_end):.1f}' x2='{x(c.step):.1f}' y2='{y(top_end):.1f}' "
                   f"stroke='{colour}'/><circle cx='{x(c.step):.1f}' cy='{y(mean):.1f}' r='3' fill='{colour}' "
                   f"class='guard-{kind}'><title>step {c.step}: {esc(c.describe())}</title></circle>")
    svg.append("</svg></figure>")
    return "".join(svg)


def _statistics(rows: Sequence[dict], recommended: Optional[dict]) -> str:
    """Small line charts of the convergence statistics against step, each on its own labelled
    scale, with the settled region (``statistics.plateau_start``) shaded and the recommendation marked."""
    from .monitoring.statistics import PLATEAU_DRIFT, plateau_start

    settled = plateau_start(rows)
    steps = [r["step"] for r in rows]
    if not steps:
        return ""
    span = (min(steps), max(steps))
    marked = recommended["step"] if recommended else None
    charts = [_statistic_chart(key, title, hint, points, span, settled, marked)
              for key, title, hint in STATISTIC_CHARTS
              if len(points := [(r["step"], r[key]) for r in rows if r.get(key) is not None]) >= 2]
    if not charts:
        return ""
    note = (f"Shaded: settled, from step {settled} on (drift at most {PLATEAU_DRIFT} nats)." if settled is not None
            else "The run has not settled (drift above the plateau threshold at the last checkpoint).")
    return ("<h2>Convergence statistics by step</h2><p class='muted' id='plateau'>" + esc(note)
            + " Dashed: the recommended checkpoint.</p><div class='grid'>" + "".join(charts) + "</div>")


def _statistic_chart(key: str, title: str, hint: str, points: list, span: tuple, settled: Optional[int],
                     marked: Optional[int]) -> str:
    """One small chart of ``points`` (``[(step, value)]``) on a scale of its own."""
    from .monitoring.statistics import PLATEAU_DRIFT

    width, height, left, bottom, top = 300, 170, 52, 30, 14
    low_step, high_step = span
    low, high = min(v for _, v in points), max(v for _, v in points)
    high = high if high > low else low + 1.0

    def x(step):
        return left + (step - low_step) / ((high_step - low_step) or 1) * (width - left - 10)

    def y(value):
        return top + (1 - (value - low) / (high - low)) * (height - top - bottom)

    svg = [f"<figure class='stat' id='stat-{key}'><svg width='{width}' height='{height}' role='img' "
           f"aria-label='{esc(title)} by step'>"]
    if settled is not None:
        svg.append(f"<rect x='{x(settled):.1f}' y='{top}' width='{x(high_step) - x(settled):.1f}' "
                   f"height='{height - top - bottom}' class='plateau'><title>settled from step {settled}: "
                   f"drift at most {PLATEAU_DRIFT} nats</title></rect>")
    svg += [f"<line x1='{left}' y1='{height - bottom}' x2='{width - 10}' y2='{height - bottom}' class='axis'/>",
            f"<line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' class='axis'/>",
            f"<text x='{left - 4}' y='{top + 8}' class='label' text-anchor='end'>{high:.3g}</text>",
            f"<text x='{left - 4}' y='{height - bottom}' class='label' text-anchor='end'>{low:.3g}</text>",
            f"<text x='{left}' y='{height - 12}' class='label'>step {low_step}</text>",
            f"<text x='{width - 10}' y='{height - 12}' class='label' text-anchor='end'>step {high_step}</text>"]
    if marked is not None:
        svg.append(f"<line x1='{x(marked):.1f}' y1='{top}' x2='{x(marked):.1f}' y2='{height - bottom}' class='best'/>")
    svg.append("<polyline class='stat-line' points='" + " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points) + "'/>")
    svg += [f"<circle cx='{x(s):.1f}' cy='{y(v):.1f}' r='2.5' class='stat-point'><title>step {s}: {v:.4g}</title>"
            "</circle>" for s, v in points]
    svg.append(f"</svg><figcaption>{esc(title)}<br><span class='muted'>{esc(hint)}</span></figcaption></figure>")
    return "".join(svg)


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
            _fmt(r["noise_fraction"]),
            _fmt(r["mean_attribution"]),
            _fmt(r["mean_entropy_context"]),
            _fmt(r["mean_kl"]),
            _fmt(r.get("eval_loss"), 4),
        )
        css = " class='best-row'" if r["checkpoint"] == best else ""
        out.append(f"<tr{css}>" + "".join(f"<td>{esc('-' if v is None else v)}</td>" for v in values) + "</tr>")
    return "".join(out) + "</table>"


def _scatter(row: dict, record: dict, settings) -> str:
    width, height, pad = 240, 190, 26
    tokens = [(i, t) for i, result in enumerate(record["results"]) for t in result.get("tokens", [])]
    name = "entropy_context" if settings.noise_entropy == "context" else "entropy_prompt"
    band, threshold = settings.as_band, settings.entropy_threshold
    reach = max([abs(t["attribution_score"]) for _, t in tokens] + [band * 2, 0.5])
    top = max([t[name] for _, t in tokens] + [threshold]) * 1.1

    def x(value):
        return pad + (value + reach) / (2 * reach) * (width - 2 * pad)

    def y(value):
        return height - pad - value / top * (height - 2 * pad)

    out = [
        f"<figure class='scatter'><svg width='{width}' height='{height}' role='img'>",
        f"<rect x='{x(-band):.1f}' y='{pad}' width='{x(band) - x(-band):.1f}' height='{y(threshold) - pad:.1f}' "
        f"class='noise-region'/>",
        f"<line x1='{x(0):.1f}' y1='{pad}' x2='{x(0):.1f}' y2='{height - pad}' class='axis'/>",
        f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' class='axis'/>",
    ]
    for index, token in tokens:
        out.append(
            f"<circle cx='{x(token['attribution_score']):.1f}' cy='{y(token[name]):.1f}' r='3' "
            f"fill='{COLOURS[index % len(COLOURS)]}'><title>prompt {index}, {esc(repr(token['token']))}: "
            f"AS {token['attribution_score']:+.3f}, H {token[name]:.3f}</title></circle>"
        )
    out.append(f"<text x='{pad}' y='{height - 6}' class='label'>{-reach:.2g}</text>"
               f"<text x='{x(0):.1f}' y='{height - 6}' class='label' text-anchor='middle'>AS 0</text>"
               f"<text x='{width - pad}' y='{height - 6}' class='label' text-anchor='end'>{reach:.2g}</text>"
               f"<text x='{pad - 3}' y='{pad + 8}' class='label' text-anchor='end'>{top:.2g}</text>"
               f"<text x='{pad - 3}' y='{height - pad}' class='label' text-anchor='end'>0</text>"
               f"<text x='{pad + 3}' y='{pad - 6}' class='label'>H (nats)</text>")
    out.append(f"</svg><figcaption>{esc(row['checkpoint'])}: {esc(row['noise_tokens'])} noise</figcaption></figure>")
    return "".join(out)


def _heatmap(index: int, prompt: str, rows: Sequence[dict], records: dict, recommended: Optional[dict]) -> str:
    out = [
        f"<h3>Prompt {index}</h3><p class='prompt'>{esc(prompt)}</p><div class='scroll'>"
        f"<table class='heatmap' id='heatmap-{index}'>"
    ]
    first = records[rows[0]["checkpoint"]]["results"][index]
    out.append(
        "<tr><th>checkpoint</th>"
        + "".join(f"<th class='tok'>{esc(t['token'])}</th>" for t in first["tokens"])
        + "<th>response</th></tr>"
    )
    best = recommended["checkpoint"] if recommended else None
    for row in rows:
        result = records[row["checkpoint"]]["results"][index]
        css = " class='best-row'" if row["checkpoint"] == best else ""
        cells = [f"<tr{css}><th>{esc(row['checkpoint'])}</th>"]
        if not result.get("valid", True):
            cells.append(f"<td colspan='{len(first['tokens'])}'>invalid: {esc(result.get('error'))}</td>")
        for token in result.get("tokens", []):
            cells.append(
                f"<td class='cell{' noise' if token['noise'] else ''}' "
                f"style='background:{as_colour(token['attribution_score'])}' "
                f"title='{esc(_token_details(token))}'>{esc(token['token'])}</td>"
            )
        cells.append(f"<td class='response'>{esc(result.get('response', ''))}</td></tr>")
        out.append("".join(cells))
    return "".join(out) + "</table></div>"


def _token_details(token: dict) -> str:
    lines = [
        f"{token['token']!r} (position {token['position']}, id {token['token_id']})",
        f"AS {token['attribution_score']:+.4f} ({token.get('band', '')}){', NOISE' if token['noise'] else ''}",
        f"H prompt {token['entropy_prompt']:.4f}, H context {token['entropy_context']:.4f}",
        f"KL(ctx||prm) {token['kl_context_prompt']:.4f}, KL(prm||ctx) {token['kl_prompt_context']:.4f}",
    ]
    if token.get("replacement_entropy") is not None:
        lines.append(f"top-p set {token['top_p_set_size']}: H rep {token['replacement_entropy']:.3f} greedy, "
                     f"{token['replacement_entropy_sampled']:.3f} sampled; original response "
                     f"{token['original_response_share']:.2f} greedy, {token['original_response_share_sampled']:.2f} "
                     "sampled")
    scopes = [f"{name} {token[f'{name}_scope']:.3g}" for name in SCOPE_NAMES
              if token.get(f"{name}_scope") is not None]
    if scopes:
        lines.append("Jacobian Scopes: " + ", ".join(scopes))
    for name, key in (("top q_prompt", "top_prompt"), ("top q_context", "top_context")):
        candidates = ", ".join(f"{c['token']!r} {c['prob']:.3f}" for c in token.get(key, []))
        lines.append(f"{name}: {candidates}")
    return "\n".join(lines)


def _fmt(value, digits: int = 3):
    return None if value is None else f"{value:.{digits}f}"


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
