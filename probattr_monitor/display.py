"""Terminal output: a readable table per probed prompt, coloured by AS band (works in CI logs too)."""

from __future__ import annotations

from typing import Iterable

from .probes.result import ProbeResult

BAND_STYLES = {"negative": "red", "near_zero": "yellow", "high": "green"}


def result_table(result: ProbeResult):
    """A ``rich.table.Table`` of one result: token, AS (with its 95% half-width when estimated),
    both entropies, KL(q_context || q_prompt), band, noise (``?``: uncertain)."""
    from rich.table import Table

    table = Table(title=f"prompt: {result.prompt}", title_justify="left", show_lines=False)
    for name, justify in (("#", "right"), ("token", "left"), ("AS", "right"), ("H prompt", "right"),
                          ("H context", "right"), ("KL", "right"), ("band", "left"), ("noise", "center")):
        table.add_column(name, justify=justify)
    estimated = any(token.attribution_score_stderr > 0 for token in result.tokens)
    for token in result.tokens:
        error = f"±{1.96 * token.attribution_score_stderr:.3f}" if estimated else ""
        table.add_row(
            str(token.position),
            repr(token.token)[1:-1],
            f"{token.attribution_score:+.3f}{error}",
            f"{token.entropy_prompt:.3f}",
            f"{token.entropy_context:.3f}",
            f"{token.kl_context_prompt:.3f}",
            token.band,
            "?" if token.noise_uncertain else ("NOISE" if token.noise else ""),
            style=BAND_STYLES.get(token.band, ""),
        )
    return table


def print_results(results: Iterable[ProbeResult], console=None) -> None:
    """Print each result's table, its response and a one-line summary."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    for index, result in enumerate(results):
        if not result.valid:
            console.print(f"[bold red]prompt {index}: invalid result[/] - {escape(result.error or '')}")
            console.print(f"prompt: {escape(result.prompt)}")
            continue
        console.print(result_table(result))
        console.print(f"[bold]response[/] ({result.response_source}): {escape(result.response)}")
        summary = result.summary
        uncertain = f" ({summary['noise_uncertain']} uncertain)" if summary.get("noise_uncertain") else ""
        console.print(
            f"noise tokens {summary['noise_tokens']}/{summary['n_tokens']}{uncertain}  "
            f"mean AS {summary['mean_attribution']:+.3f}  log P(r|p) {result.log_p_response:.3f}  "
            f"token-forwards {summary['token_forwards']:,} ({summary.get('candidates', 'exact')})  "
            f"{summary['seconds']:.2f}s\n"
        )
