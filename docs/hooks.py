"""MkDocs hook: the CLI reference is generated from the parser itself, so it cannot drift.

A page holding the line ``<!-- cli-reference -->`` gets, in its place, the ``--help`` of the
``probattr-monitor`` parser and of every subcommand, as ``probattr_monitor.cli.build_parser``
builds them.
"""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"


def cli_reference() -> str:
    """Markdown: one section per subcommand with its help text in a code block."""
    from probattr_monitor.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; fix the width for the docs
    parser = build_parser()
    parser.prog = "probattr-monitor"
    sections = ["## probattr-monitor", "", "```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                sections += [f"## probattr-monitor {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace :data:`MARKER` with :func:`cli_reference`."""
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown
