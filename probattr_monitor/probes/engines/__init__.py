"""What runs the model: the exact engine on a shared prefix cache (``engine``, ``cache``), the
budget policy (``budgeted``), one entry for both (``scores``), and the other probes that need
forward or backward passes: log-likelihoods (``likelihood``), replacement entropy
(``replacement``), Jacobian Scopes (``scopes``) and the joint AS (``joint``)."""
