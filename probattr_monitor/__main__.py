"""``python -m probattr_monitor`` is the ``probattr-monitor`` command."""

from .cli import entry_point

if __name__ == "__main__":
    entry_point()
