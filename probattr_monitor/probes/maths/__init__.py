"""Pure maths over tensors: the probe quantities from the three log-probability vectors
(``quantities``), noise classification (``noise``), the budget policy's estimator (``estimator``)
and number checks (``values``). Nothing here runs a model."""
