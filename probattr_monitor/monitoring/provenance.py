"""How a probe run was computed: what every record says about the model it probed.

``provenance(model, settings)`` is ``{"dtype", "device", "model_class", "policy",
"probattr_monitor_version", "torch_version", "transformers_version"}`` plus, for a PEFT model,
``"base_model"`` and ``"adapter"`` when known, and ``"weights"``: :func:`weights_fingerprint` of the
model it probed. ``dtype`` and ``policy`` are part of the reuse key
(:class:`~probattr_monitor.monitoring.record.RecordKey`): a float32 sweep never reuses bfloat16
records; ``weights`` (with the checkpoint's name and step) says which weights the numbers belong
to, so a record is never reused for other weights (``CheckpointRecord.measured``).
"""

from __future__ import annotations

import hashlib
from typing import Optional

import torch

from ..loading import dtype_name_of as dtype_name
from ..probes.inputs.tokens import vocab_size_of
from ..probes.types.settings import ProbeSettings


def model_dtype(model) -> str:
    """The dtype the model's weights are held in (its first floating-point parameter)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return dtype_name(parameter.dtype)
    return dtype_name(torch.get_default_dtype())


def weights_fingerprint(model) -> Optional[str]:
    """``"sha256:<hex>"`` over every parameter of ``model`` (its name, dtype, shape and bytes, in
    ``named_parameters`` order), so a PEFT model's fingerprint covers its base and its adapter.

    Equal fingerprints mean bit-identical weights: the Trainer's model at a save and the same
    checkpoint loaded back in the same dtype give the same fingerprint. It costs one pass over the
    weights (about 1 GB/s on a CPU core: 0.6 s for SmolLM2-135M in float32, a fraction of a percent
    of one probe run). ``None`` when the parameters are sharded across processes (FSDP, ZeRO-3),
    where no process holds them all.
    """
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        if hasattr(parameter, "ds_id") or type(parameter).__name__ == "DTensor":
            return None
        data = parameter.detach()
        digest.update(f"{name}|{dtype_name(data.dtype)}|{tuple(data.shape)}|".encode("utf-8"))
        digest.update(memoryview(data.contiguous().reshape(-1).view(torch.uint8).cpu().numpy()))
    return f"sha256:{digest.hexdigest()}"


def provenance(model, settings: ProbeSettings, base_model: Optional[str] = None,
               adapter: Optional[str] = None, fingerprint: bool = True) -> dict:
    """What a record of probing ``model`` with ``settings`` must say about how it was computed,
    :func:`weights_fingerprint` included (``fingerprint=False``: ``"weights"`` is ``None``, for a
    caller that fingerprints only the runs it writes a record of)."""
    import transformers

    from .. import __version__

    vocab_size = vocab_size_of(model)
    device = next(iter(model.parameters())).device
    info: dict = {
        "dtype": model_dtype(model),
        "device": str(device),
        "model_class": type(model).__name__,
        "policy": settings.policy_for(vocab_size),
        "probattr_monitor_version": __version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "weights": weights_fingerprint(model) if fingerprint else None,
    }
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and peft_config:
        config = next(iter(peft_config.values()))
        info["base_model"] = base_model or getattr(config, "base_model_name_or_path", None)
        info["adapter"] = adapter
        info["model_class"] = f"{type(model).__name__}({type(model.get_base_model()).__name__})"
    return info
