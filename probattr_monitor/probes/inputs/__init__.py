"""Input preparation for the probes: the token conventions and the model and tokenizer checks
(``tokens``), and prompts built through a chat template (``chat``)."""
