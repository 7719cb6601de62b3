"""The report's small HTML pieces: escaping every string that comes from data, the colour of an
AS value, number formatting, the chart palette."""

from __future__ import annotations

import html

from ..probes.types.settings import SCOPE_NAMES

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def esc(value) -> str:
    """HTML-escape any value for text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def as_colour(score: float, limit: float = 2.0) -> str:
    """Diverging colour for an AS: blue below 0, white at 0, red above (saturating at +-limit)."""
    t = max(-1.0, min(1.0, score / limit))
    fade = int(round(255 * (1 - abs(t))))
    return f"rgb(255,{fade},{fade})" if t > 0 else f"rgb({fade},{fade},255)"


def fmt(value, digits: int = 3):
    """``value`` with ``digits`` decimals, or ``None`` when it is missing (the table shows ``-``)."""
    return None if value is None else f"{value:.{digits}f}"


def token_details(token: dict) -> str:
    """The hover text of one token: its AS, entropies, KL, band and noise flag, stability, scopes, top candidates."""
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
