"""Trainer integration: :class:`ProbAttrCallback`."""

from .probattr_callback import ProbAttrCallback

__all__ = ["ProbAttrCallback"]
