"""Leave training exactly as it was: probing must not change a single bit of the training run."""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def preserved_training_state(model) -> Iterator[None]:
    """Restore, on exit, every RNG state (python, numpy, torch CPU, all CUDA devices), the model's
    training mode and its gradient-checkpointing flag.

    Probing generates and runs forwards in eval mode; nothing it does may shift the dropout masks
    or data order that training draws next, so with and without the callback the final weights
    are identical (tested).
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    was_training = model.training if model is not None else None
    checkpointing = _checkpointing(model)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        if model is not None:
            model.train(was_training)
            if checkpointing is True and not _checkpointing(model):
                enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
                enable()


def _checkpointing(model):
    """Whether gradient (activation) checkpointing is on; transformers 5 renamed the flag."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(model), name):
            return getattr(model, name)
    return None
