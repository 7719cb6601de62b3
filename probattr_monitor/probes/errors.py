"""The 0.2 place of the errors, now :mod:`probattr_monitor.errors`, until 0.5: each name
resolves there after one ``FutureWarning`` (importing this stub does nothing)."""

from ..errors import moved_module

__getattr__ = moved_module("probattr_monitor.probes.errors", "probattr_monitor.errors")
