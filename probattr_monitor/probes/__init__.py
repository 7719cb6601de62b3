"""The science, importing nothing of the monitor but its errors: ``maths`` (pure functions over
tensors), ``engines`` (what runs the model), ``inputs`` (token conventions, chat templates) and
``types`` (settings, results)."""
