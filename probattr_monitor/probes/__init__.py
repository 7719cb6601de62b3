"""The science: the exact scoring engine, the probe quantities, noise classification, results."""
