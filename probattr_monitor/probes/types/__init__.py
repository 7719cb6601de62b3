"""The types the probes share: the settings (``settings.ProbeSettings``), the per-prompt result
(``result.ProbeResult``) and the per-position scores every policy ends in (``position_scores``)."""
