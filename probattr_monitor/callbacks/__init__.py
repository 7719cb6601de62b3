"""Trainer integration: :class:`ProbAttrCallback` and :class:`ProbAttrEarlyStopping`."""

from .early_stopping import ProbAttrEarlyStopping
from .probattr_callback import ProbAttrCallback

__all__ = ["ProbAttrCallback", "ProbAttrEarlyStopping"]
