"""The exit codes of the ``probattr-monitor`` command."""

from __future__ import annotations

EXIT_OK = 0


EXIT_FAILURE = 1


EXIT_USAGE = 2


EXIT_SOME_FAILED = 3


EXIT_INTERRUPTED = 130
