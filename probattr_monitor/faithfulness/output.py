"""Showing a :class:`~.run.FaithfulnessResult`: one table (method x metric, mean and 95%
interval), the AS check, and a plot (one panel per metric)."""

from __future__ import annotations

from .run import BETTER, METRICS, PROBABILITY_METRICS, FaithfulnessResult


def print_faithfulness(result: FaithfulnessResult, console=None) -> None:
    """The method x metric table, the AS check, the skipped methods and the time per method."""
    from rich.console import Console
    from rich.table import Table

    from ..display import safe

    console = console or Console()
    prompts = len(result.per_prompt)
    deletion = [metric for metric in METRICS if metric not in PROBABILITY_METRICS]
    titles = (f"faithfulness over {prompts} prompt(s): mean [95% interval]",
              "probability faithfulness (JoPA): drop of log P(r) in nats when that share of the prompt is removed")
    for title, columns in zip(titles, (deletion, PROBABILITY_METRICS)):
        table = Table(title=title, title_justify="left")
        table.add_column("method")
        for metric in columns:
            table.add_column(f"{metric.split('@')[-1]} ({BETTER[metric]} better)" if "@" in metric
                             else f"{metric} ({BETTER[metric]} better)", justify="right")
        table.add_column("seconds", justify="right")
        for method in result.methods:
            cells = []
            for metric in columns:
                value = result.summary[metric][method]
                cells.append(f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]")
            table.add_row(method, *cells, f"{result.seconds.get(method, 0.0):.1f}")
        console.print(table)
    check = result.as_check
    spearman = "-" if check["spearman"] is None else f"{check['spearman']:+.3f}"
    same = "-" if check["same_sign_share"] is None else f"{check['same_sign_share']:.2f}"
    console.print(f"AS vs the observed change of log P(r|p) when one token is replaced ({check['tokens']} tokens): "
                  f"Spearman {spearman}, same sign {same}")
    for top in check["top_tokens"]:
        console.print(f"  highest AS {safe(repr(top['token']))}: AS {top['attribution_score']:+.3f}, observed "
                      f"{top['observed_change']:+.3f}  ({safe(top['prompt'][:60])})")
    for method, why in result.skipped.items():
        console.print(f"[yellow]{method} skipped:[/] {safe(why)}")


def plot_faithfulness(result: FaithfulnessResult, path) -> None:
    """A PNG with one panel per metric: each method's mean with its 95% interval."""
    from matplotlib.figure import Figure  # no pyplot: no backend is chosen for the caller

    figure = Figure(figsize=(2 * len(METRICS), 7.2))
    axes = figure.subplots(2, (len(METRICS) + 1) // 2)
    axes = axes.reshape(-1)
    for axis in axes[len(METRICS):]:
        axis.set_visible(False)
    for axis, metric in zip(axes, METRICS):
        means = [result.summary[metric][m]["mean"] for m in result.methods]
        lows = [mean - result.summary[metric][m]["low"] for m, mean in zip(result.methods, means)]
        highs = [result.summary[metric][m]["high"] - mean for m, mean in zip(result.methods, means)]
        colours = ["tab:red" if m == "attribution_score" else "tab:blue" for m in result.methods]
        axis.bar(range(len(means)), means, yerr=[lows, highs], color=colours, capsize=3)
        axis.set_xticks(range(len(means)), result.methods, rotation=60, ha="right", fontsize=8)
        axis.set_title(f"{metric}\n({BETTER[metric]} is better)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
