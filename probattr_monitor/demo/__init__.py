"""The training demo: a corpus from a small hidden Markov grammar whose probabilities are exact,
a tiny GPT-2 trained on it with ProbAttrCallback, and the probes compared with the truth."""
