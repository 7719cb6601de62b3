"""Terminal output: a readable table per probed prompt, coloured by AS band (works in CI logs too).

Every string that comes from the user or the model (prompts, responses, tokens, paths, errors)
goes through :func:`safe`: rich markup in it is shown as text (``[/INST]`` is every Llama-2 chat
prompt) and control characters (ESC sequences) never reach the terminal.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

from .probes.types.result import ProbeResult
from .probes.types.settings import SCOPE_NAMES

if TYPE_CHECKING:
    from .sweep.config import SweepSummary

BAND_STYLES = {"negative": "red", "near_zero": "yellow", "high": "green"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text) -> str:
    """``text`` for rich output: control characters (other than newline and tab) written as
    ``\\xNN`` escapes, then rich markup escaped, so the text prints exactly as it is."""
    from rich.markup import escape

    visible = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", str(text))
    return escape(visible)


def result_table(result: ProbeResult):
    """A ``rich.table.Table`` of one result: token, AS (with its 95% half-width when estimated),
    both entropies, KL(q_context || q_prompt), band, noise (``?``: uncertain)."""
    from rich.console import JustifyMethod
    from rich.table import Table

    table = Table(title=f"prompt: {safe(result.prompt)}", title_justify="left", show_lines=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("#", "right"), ("token", "left"), ("AS", "right"), ("H prompt", "right"), ("H context", "right"),
        ("KL", "right"), ("band", "left"), ("noise", "center"))
    stability = any(token.replacement_entropy is not None for token in result.tokens)
    if stability:  # response stability (replacement entropy on)
        columns += (("top-p set", "right"), ("H rep", "right"), ("H rep sampled", "right"), ("orig. share", "right"))
    scopes = [name for name in SCOPE_NAMES
              if any(getattr(token, f"{name}_scope") is not None for token in result.tokens)]
    columns += tuple((f"{name} scope", "right") for name in scopes)
    for name, justify in columns:
        table.add_column(name, justify=justify)
    estimated = any(token.attribution_score_stderr > 0 for token in result.tokens)
    for token in result.tokens:
        error = f"±{1.96 * token.attribution_score_stderr:.3f}" if estimated else ""
        cells = [
            str(token.position),
            safe(repr(token.token)[1:-1]),
            f"{token.attribution_score:+.3f}{error}",
            f"{token.entropy_prompt:.3f}",
            f"{token.entropy_context:.3f}",
            f"{token.kl_context_prompt:.3f}",
            token.band,
            "?" if token.noise_uncertain else ("NOISE" if token.noise else ""),
        ]
        if stability:
            cells += [str(token.top_p_set_size), f"{token.replacement_entropy or 0.0:.3f}",
                      f"{token.replacement_entropy_sampled or 0.0:.3f}", f"{token.original_response_share or 0.0:.2f}"]
        cells += [f"{getattr(token, f'{name}_scope'):.3g}" for name in scopes]
        table.add_row(*cells, style=BAND_STYLES.get(token.band, ""))
    return table


def print_results(results: Iterable[ProbeResult], console=None) -> None:
    """Print each result's table, its response and a one-line summary."""
    from rich.console import Console

    console = console or Console()
    for index, result in enumerate(results):
        if not result.valid:
            console.print(f"[bold red]prompt {index}: invalid result[/] - {safe(result.error or '')}")
            console.print(f"prompt: {safe(result.prompt)}")
            continue
        console.print(result_table(result))
        template = ", chat template: only the user's tokens scored" if result.chat_template else ""
        console.print(f"[bold]response[/] ({result.response_source}{template}): {safe(result.response)}")
        if result.response_empty:
            console.print(f"[bold yellow]warning:[/] prompt {index}: the response is empty (only end-of-sequence "
                          "or whitespace), so this table says little about the model; an instruct model may need "
                          "--chat-template on, or pass --response")
        summary = result.summary
        uncertain = f" ({summary['noise_uncertain']} uncertain)" if summary.get("noise_uncertain") else ""
        console.print(
            f"noise tokens {summary['noise_tokens']}/{summary['n_tokens']}{uncertain}  "
            f"mean AS {summary['mean_attribution']:+.3f}  log P(r|p) {result.log_p_response:.3f}  "
            f"token-forwards {summary['token_forwards']:,} ({summary.get('candidate_policy', 'exact')})  "
            f"{summary['seconds']:.2f}s\n"
        )


def print_summary(summary: "SweepSummary", console) -> None:
    """A table of a sweep's rows with the recommendation marked, and where its summaries are."""
    from rich.markup import escape
    from rich.table import Table

    from .sweep.config import SUMMARY_CSV, SUMMARY_JSON

    table = Table(title=f"sweep of {escape(str(summary.output_dir))}", title_justify="left")
    for name in ("step", "status", "noise", "noise frac", "mean AS", "H ctx", "KL", "eval loss", ""):
        table.add_column(name, justify="left" if name in ("status", "") else "right")
    best = summary.recommended["step"] if summary.recommended else None

    def number(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    for row in summary.rows:
        table.add_row(
            str(row["step"]),
            row["status"],
            "-" if row["noise_tokens"] is None else str(row["noise_tokens"]),
            number(row["noise_fraction"]),
            number(row["mean_attribution"]),
            number(row["mean_entropy_context"]),
            number(row["mean_kl"]),
            number(row["eval_loss"], 4),
            "<- best" if row["step"] == best else "",
            style="bold green" if row["step"] == best else ("red" if row["status"] != "ok" else ""),
        )
    console.print(table)
    if summary.recommended:
        console.print(
            f"recommended: [bold green]{escape(summary.recommended['checkpoint'])}[/] - "
            f"{escape(summary.recommended['reason'])}"
        )
    for row in summary.rows:
        if row["status"] != "ok":
            console.print(f"[red]{escape(row['checkpoint'])} failed:[/] {escape(str(row['error']))}")
    console.print(
        f"computed {len(summary.computed)}, reused {len(summary.reused)}; summaries in "
        f"{escape(str(summary.output_dir / SUMMARY_CSV))} and {SUMMARY_JSON}"
    )
