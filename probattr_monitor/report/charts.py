"""The report's inline SVG charts: noise tokens and eval loss against step, the guard set's
log-likelihood, the convergence statistics with the settled region shaded, the entropy-against-AS
scatter of a checkpoint and the per-prompt AS heat-map."""

from __future__ import annotations

from typing import Optional, Sequence

from .markup import COLOURS, as_colour, esc, token_details


def curve(rows: Sequence[dict], recommended: Optional[dict]) -> str:
    """SVG: noise tokens (left axis) and eval loss (right axis) against step, the recommended step marked."""
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


def guard_chart(rows: Sequence[dict], recommended: Optional[dict]) -> str:
    """Guard retention against the target, per checkpoint: the mean paired change of the guard's
    log P(r|p) against the best earlier checkpoint with its 95% interval (``monitoring.regression``),
    the ``-tolerance`` line, regressed checkpoints in red; the eval loss (the target) is the
    curve above it, on the same steps."""
    from ..monitoring.regression import DEFAULT_TOLERANCE, guard_comparisons

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


def statistics_charts(rows: Sequence[dict], recommended: Optional[dict]) -> str:
    """Small line charts of the convergence statistics against step, each on its own labelled
    scale, with the settled region (``statistics.plateau_start``) shaded and the recommendation marked."""
    from ..monitoring.convergence import PLATEAU_DRIFT, plateau_start
    from ..monitoring.statistics import charted

    settled = plateau_start(rows)
    steps = [r["step"] for r in rows]
    if not steps:
        return ""
    span = (min(steps), max(steps))
    marked = recommended["step"] if recommended else None
    charts = [statistic_chart(s.name, s.label, s.hint, points, span, settled, marked)
              for s in charted()  # the statistics declared with chart=True (monitoring.statistics)
              if len(points := [(r["step"], r[s.name]) for r in rows if r.get(s.name) is not None]) >= 2]
    if not charts:
        return ""
    note = (f"Shaded: settled, from step {settled} on (drift at most {PLATEAU_DRIFT} nats)." if settled is not None
            else "The run has not settled (drift above the plateau threshold at the last checkpoint).")
    return ("<h2>Convergence statistics by step</h2><p class='muted' id='plateau'>" + esc(note)
            + " Dashed: the recommended checkpoint.</p><div class='grid'>" + "".join(charts) + "</div>")


def statistic_chart(key: str, title: str, hint: str, points: list, span: tuple, settled: Optional[int],
                     marked: Optional[int]) -> str:
    """One small chart of ``points`` (``[(step, value)]``) on a scale of its own."""
    from ..monitoring.convergence import PLATEAU_DRIFT

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


def scatter(row: dict, record: dict, settings) -> str:
    """SVG: one checkpoint's tokens, entropy against AS, one colour per prompt, the noise region shaded."""
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


def heatmap(index: int, prompt: str, rows: Sequence[dict], records: dict, recommended: Optional[dict]) -> str:
    """HTML table: prompt ``index``'s AS per token (columns) at each checkpoint (rows), details on hover."""
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
                f"title='{esc(token_details(token))}'>{esc(token['token'])}</td>"
            )
        cells.append(f"<td class='response'>{esc(result.get('response', ''))}</td></tr>")
        out.append("".join(cells))
    return "".join(out) + "</table></div>"
