"""``trainable_gguf_model``: a model in the state transformers leaves a dequantised GGUF model
(a GGUF quantizer attached, marked quantized) becomes trainable by a real ``Trainer``."""

from __future__ import annotations

import pytest
import torch
from transformers.quantizers.quantizer_gguf import GgufHfQuantizer
from transformers.utils.quantization_config import GgufConfig

from probattr_monitor.demo.tiny_models import tiny_gpt2
from probattr_monitor.errors import ProbeInputError
from probattr_monitor.loading import trainable_gguf_model

from .callbacks.helpers import make_trainer, tokenizer


def marked_as_gguf(model):
    """What ``from_pretrained(..., gguf_file=...)`` leaves on the model after dequantising."""
    config = GgufConfig()
    model.hf_quantizer = GgufHfQuantizer(config)
    model.is_quantized = True
    model.config.quantization_config = config
    return model


def test_the_trainer_refuses_a_marked_model_and_trains_it_once_cleared(tmp_path):
    tok = tokenizer()
    with pytest.raises(ValueError, match="quantized"):
        make_trainer(tmp_path / "refused", tok=tok, model=marked_as_gguf(tiny_gpt2(len(tok))))
    model = trainable_gguf_model(marked_as_gguf(tiny_gpt2(len(tok))))
    assert model.hf_quantizer is None and not model.is_quantized
    assert getattr(model.config, "quantization_config", None) is None
    make_trainer(tmp_path / "run", tok=tok, model=model, max_steps=2, save_steps=2).train()
    assert (tmp_path / "run" / "checkpoint-2" / "model.safetensors").is_file()


def test_weights_that_are_not_float_keep_the_marks():
    model = marked_as_gguf(tiny_gpt2(300)).to(torch.float16)
    with pytest.raises(ProbeInputError, match="expected float32 weights"):
        trainable_gguf_model(model)
    assert model.is_quantized
