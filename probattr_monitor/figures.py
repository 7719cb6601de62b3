"""Figures of probe runs (matplotlib, imported lazily; the Agg backend, no display needed).

Each function returns a ``matplotlib.figure.Figure`` built without pyplot's global state, so it
never leaks figures (no ``plt.close`` needed) and works in a terminal, a CI log or a notebook.
"""

from __future__ import annotations

from typing import Sequence

from .errors import MissingPackageError
from .probes.types.result import ProbeResult

TOKENS_PER_ROW = 12


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingPackageError("figures", "matplotlib", "plot") from None
    return Figure(figsize=(width, height), dpi=80)


def entropy_vs_attribution(results: Sequence[ProbeResult], as_band: float, entropy_threshold: float,
                           entropy: str = "context"):
    """The paper's figure 2: contextual entropy against AS, one colour per prompt, noise shaded.

    The shaded region is ``|AS| <= as_band`` and ``entropy >= entropy_threshold``: its points are
    the noise tokens.
    """
    figure = _figure(6.4, 4.2)
    axes = figure.add_subplot()
    name = "entropy_context" if entropy == "context" else "entropy_prompt"
    top = max([getattr(t, name) for r in results for t in r.tokens] + [entropy_threshold]) * 1.1 + 0.1
    axes.axvspan(-as_band, as_band, ymin=min(entropy_threshold / top, 1.0), ymax=1.0, color="0.85",
                 label="noise region")
    for index, result in enumerate(results):
        if result.tokens:
            axes.scatter([t.attribution_score for t in result.tokens], [getattr(t, name) for t in result.tokens],
                         s=14, label=f"prompt {index}", color=f"C{index % 10}")
    axes.set_ylim(0, top)
    axes.set_xlabel("attribution score (nats)")
    axes.set_ylabel(f"{entropy} entropy (nats)")
    axes.legend(fontsize="x-small", loc="best")
    figure.tight_layout()
    return figure


def token_heatmap(result: ProbeResult, limit: float = 2.0):
    """The prompt's tokens in reading order, each cell coloured by its AS (blue < 0 < red).

    Colours saturate at ``+-limit`` nats; noise tokens are outlined in black.
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    tokens = result.tokens
    rows = max(1, -(-len(tokens) // TOKENS_PER_ROW))
    figure = _figure(TOKENS_PER_ROW * 0.9, 0.55 * rows + 0.6)
    axes = figure.add_subplot()
    colour, scale = colormaps["coolwarm"], Normalize(-limit, limit)
    for index, token in enumerate(tokens):
        row, column = divmod(index, TOKENS_PER_ROW)
        axes.add_patch(_cell(column, rows - 1 - row, colour(scale(token.attribution_score)), token.noise))
        axes.text(column + 0.5, rows - 1 - row + 0.5, token.token.replace("\n", "\\n")[:10], ha="center",
                  va="center", fontsize=7)
    axes.set_xlim(0, TOKENS_PER_ROW)
    axes.set_ylim(0, rows)
    axes.set_axis_off()
    axes.set_title(f"AS per token ({-limit:g} blue .. {limit:g} red nats); outlined: noise", fontsize=8)
    figure.tight_layout()
    return figure


def _cell(x: float, y: float, colour, outlined: bool):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="black" if outlined else "white",
                     linewidth=1.5 if outlined else 0.5)


def figure_to_array(figure):
    """Render a figure to an ``(H, W, 3)`` uint8 RGB array (Agg), the form both sinks take."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
