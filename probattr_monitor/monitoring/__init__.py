"""The run layer: one probe run over a prompt set (``run``), what it logs (``metrics``) and what it
stores (``record``), shared by the Trainer callback and the sweep."""
