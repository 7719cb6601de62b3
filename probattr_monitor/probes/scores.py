"""The 0.2 place of :mod:`probattr_monitor.probes.engines.scores`, until 0.5:
each name resolves there after one ``FutureWarning`` (importing this stub does nothing)."""

from ..errors import moved_module

__getattr__ = moved_module("probattr_monitor.probes.scores", "probattr_monitor.probes.engines.scores")
