"""Every error and deprecation the package raises, in one leaf module (it imports nothing of it).

Each error is one clear line naming the problem, never a deep torch traceback:

- :class:`InputError` (a ``ValueError``): something the user gave cannot be used; the CLI prints
  it and exits 2. Its kinds: :class:`ProbeInputError` (a prompt, response, model, tokenizer or
  setting), :class:`RunFolderError` (a run folder or checkpoint: missing, read-only, no records) and
  :class:`UnexpectedArgumentError` (a keyword the callable does not take; a ``TypeError`` too). Every
  argument check of the callbacks, early stopping, the monitoring layer and the sinks raises one.
- :class:`MissingPackageError` (an ``ImportError``): an optional package is not installed; the
  message holds the install line (also :attr:`MissingPackageError.install`).
- :class:`MethodUnavailable`: a comparison method that cannot run in this installation.
- :class:`NonFiniteLogitsError`: the model produced NaN or infinite logits (a diverged checkpoint).

:func:`warn_renamed` is how an old spelling keeps working until :data:`REMOVED_IN` (0.5), and
:func:`moved_module` and :func:`renamed_names` how a moved module or name still answers at its old
place. :func:`warn_user` is
how the package warns its users: on rank zero only.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable


class ProbattrError(Exception):
    """The base of every error this package raises on purpose."""


class InputError(ProbattrError, ValueError):
    """Something the user gave (an argument, a file, a folder) cannot be used as given."""


class ProbeInputError(InputError):
    """The prompt, response, model, tokenizer or a setting cannot be probed as given."""


class UnexpectedArgumentError(InputError, TypeError):
    """A keyword argument the callable does not take (a ``TypeError`` too, as Python's own is)."""


class RunFolderError(InputError):
    """A run folder or checkpoint cannot be used: not found, read-only, or holding no records."""


class MissingPackageError(ProbattrError, ImportError):
    """An optional package is missing; ``install`` is the command that installs it."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        self.package = package
        self.install = f"pip install 'probattr-monitor[{extra}]'"
        super().__init__(f"{what} needs the {package!r} package: {self.install}")


class MethodUnavailable(ProbattrError):
    """A comparison method that cannot run in this installation; the message says why."""


class NonFiniteLogitsError(ProbattrError, RuntimeError):
    """The model produced NaN or infinite logits (a diverged checkpoint); the result is marked invalid."""


_WARNED: set[tuple[str, str]] = set()
REMOVED_IN = "0.5"  # the release that drops every 0.2 spelling (docs/guides/migration.md lists them)


def warn_renamed(old: str, new: str, where: str, stacklevel: int = 3, once: bool = True) -> None:
    """A ``FutureWarning``, once per process for each ``(where, old)`` (every time with
    ``once=False``: for a spelling whose meaning depends on the value, such as a string that
    happens to name a file): ``old`` is now ``new``.

    Old spellings keep working until :data:`REMOVED_IN`; the warning names that release and the
    spelling to use. It is the one deprecation path: renamed arguments, flags, settings, module
    attributes (:func:`renamed_names`) and moved modules (:func:`moved_module`) all go through it.
    """
    if once and (where, old) in _WARNED:
        return
    _WARNED.add((where, old))
    warnings.warn(f"{where}: {old} is deprecated and will be removed in {REMOVED_IN}; use {new}",
                  FutureWarning, stacklevel=stacklevel)


def process_rank() -> int:
    """This process's rank: ``torch.distributed``'s when a group is up, else the launcher's ``RANK``
    (torchrun, accelerate), else 0."""
    import os
    import sys

    dist = sys.modules.get("torch.distributed")  # never imports torch for a warning
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def warn_user(message: str, category: type[Warning] = UserWarning, stacklevel: int = 2) -> None:
    """A warning for the user, issued on rank zero only (one line per run, not one per process);
    ``stacklevel`` counts from the caller, as :func:`warnings.warn`'s does."""
    if process_rank() == 0:
        warnings.warn(message, category, stacklevel=stacklevel + 1)


def moved_module(old: str, new: str) -> Callable[[str], Any]:
    """The module ``__getattr__`` (PEP 562) of the stub left at ``old``: each name resolves to
    ``new``'s, after one ``FutureWarning``; importing the stub does nothing."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(importlib.import_module(new), name)
        warn_renamed(old, new, "import")
        return value

    return __getattr__


def renamed_names(module: str, names: dict[str, tuple[str, Callable[[], Any]]]) -> Callable[[str], Any]:
    """The module ``__getattr__`` (PEP 562) of ``module`` for names it no longer holds under that
    name: ``names`` maps each old name to ``(the new dotted name, a function returning the value)``;
    each resolves after :func:`warn_renamed`, anything else is an ``AttributeError``."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new, value = names[name]
        warn_renamed(f"{module}.{name}", new, "import")
        return value()

    return __getattr__


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (stripped), or ``""``."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def one_line(error: BaseException) -> str:
    """``"Type: first line of the message"`` (just ``"Type"`` when the message is empty): how every
    error report of the monitor shows an exception (CLI, sweep rows, warnings), so a multi-line
    message never spills into a table or a log."""
    message = first_line(str(error))
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
