"""Trainer integration (the ``ProbAttrCallback``)."""
