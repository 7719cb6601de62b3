"""The training-state guard restores RNG states, the training mode and gradient checkpointing."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from probattr_monitor.callbacks.state import preserved_training_state
from probattr_monitor.demo.tiny_models import tiny_gpt2


def test_rng_states_mode_and_checkpointing_are_restored():
    model = tiny_gpt2(300).train()
    model.activation_checkpointing_enable()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with preserved_training_state(model):
        random.random(), np.random.rand(3), torch.rand(5)  # probing must not shift these streams
        model.eval()
        model.activation_checkpointing_disable()
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert model.training and model.is_activation_checkpointing


def test_restored_on_error_too():
    model = tiny_gpt2(300).train()
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    with pytest.raises(RuntimeError, match="probe failed"):  # the error goes through, the state comes back
        with preserved_training_state(model):
            torch.rand(10)
            model.eval()
            raise RuntimeError("probe failed")
    assert torch.equal(torch.rand(2), expected) and model.training
