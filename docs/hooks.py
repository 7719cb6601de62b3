"""MkDocs hook: the CLI pages are generated from the parser itself, so they cannot drift.

A page holding the line ``<!-- cli-reference -->`` gets, in its place, the ``--help`` of the
``probattr-monitor`` parser and of every subcommand, as ``probattr_monitor.cli.build_parser``
builds them; ``<!-- cli-synopsis -->`` gets the usage line of every subcommand.
"""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"
SYNOPSIS_MARKER = "<!-- cli-synopsis -->"


def subcommands():
    """``(parser, [(name, subparser)])`` of ``probattr-monitor``, at a fixed width for the docs."""
    from probattr_monitor.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; fix the width for the docs
    parser = build_parser()
    parser.prog = "probattr-monitor"
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(action.choices.items())
    return parser, found


def cli_reference() -> str:
    """Markdown: one section per subcommand with its help text in a code block."""
    parser, found = subcommands()
    sections = ["## probattr-monitor", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in found:
        sections += [f"## probattr-monitor {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(sections)


def cli_synopsis() -> str:
    """Markdown: one code block with the usage line of every subcommand."""
    _, found = subcommands()
    usages = [sub.format_usage().removeprefix("usage: ").rstrip() for _, sub in found]
    return "\n".join(["```text", *usages, "```"])


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace :data:`MARKER` with :func:`cli_reference` and :data:`SYNOPSIS_MARKER` with
    :func:`cli_synopsis`."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_reference())
    if SYNOPSIS_MARKER in markdown:
        markdown = markdown.replace(SYNOPSIS_MARKER, cli_synopsis())
    return markdown
