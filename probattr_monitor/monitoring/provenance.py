"""How a probe run was computed: what every record says about the model it probed.

``provenance(model, settings)`` is ``{"dtype", "device", "model_class", "policy",
"probattr_monitor_version", "torch_version", "transformers_version"}`` plus, for a PEFT model,
``"base_model"`` and ``"adapter"`` when known. ``dtype`` and ``policy`` are part of the reuse key
(:class:`~probattr_monitor.monitoring.record.RecordKey`): a float32 sweep never reuses bfloat16
records.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..loading import dtype_name_of as dtype_name
from ..probes.settings import ProbeSettings


def model_dtype(model) -> str:
    """The dtype the model's weights are held in (its first floating-point parameter)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return dtype_name(parameter.dtype)
    return dtype_name(torch.get_default_dtype())


def provenance(model, settings: ProbeSettings, base_model: Optional[str] = None,
               adapter: Optional[str] = None) -> dict:
    """What a record of probing ``model`` with ``settings`` must say about how it was computed."""
    import transformers

    from .. import __version__

    vocab_size = model.get_output_embeddings().weight.shape[0]
    device = next(iter(model.parameters())).device
    info: dict = {
        "dtype": model_dtype(model),
        "device": str(device),
        "model_class": type(model).__name__,
        "policy": settings.policy_for(vocab_size),
        "probattr_monitor_version": __version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and peft_config:
        config = next(iter(peft_config.values()))
        info["base_model"] = base_model or getattr(config, "base_model_name_or_path", None)
        info["adapter"] = adapter
        info["model_class"] = f"{type(model).__name__}({type(model.get_base_model()).__name__})"
    return info
