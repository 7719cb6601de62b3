"""Named declarations that the rest of the package reads instead of comparing names: the candidate
policies (``probes.types.policies``) and the trackers (``sinks.base``). A leaf: it imports nothing."""

from __future__ import annotations

from typing import Any


class Registry(dict):
    """``{name: declaration}`` with the built-ins protected and one error for an unknown name.

    Args:
        what: what a declaration is, for messages (``"candidate policy"``, ``"tracker"``).
        error: the exception raised for an unknown name or a built-in removed.
    """

    def __init__(self, what: str, error: type[Exception]) -> None:
        super().__init__()
        self.what, self.error = what, error
        self.built_in: frozenset = frozenset()

    def add(self, name: str, item: Any) -> Any:
        """Declare ``item`` as ``name`` (replacing one of the same name) and return it."""
        self[name] = item
        return item

    def remove(self, name: str) -> None:
        """Remove a declaration :meth:`add` made after :meth:`seal`; the built-ins stay."""
        if name in self.built_in:
            raise self.error(f"the built-in {self.what} {name!r} cannot be removed")
        self.pop(name, None)

    def named(self, name: str) -> Any:
        """The declaration called ``name``; :attr:`error` naming the known ones otherwise."""
        try:
            return self[name]
        except KeyError:
            raise self.error(f"unknown {self.what} {name!r}; known: {', '.join(self)}") from None

    def seal(self) -> None:
        """Mark what is declared now as built in (never removed)."""
        self.built_in = frozenset(self)
