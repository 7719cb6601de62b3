"""Loading a model folder for probing, with one clear error line per problem.

Local files only (``local_files_only=True``): a path that does not exist is an error, never a
download. Safetensors are preferred by transformers; ``trust_remote_code`` is off unless asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, cast

import torch

from .probes.errors import ProbeInputError, one_line

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def parse_dtype(name: str) -> torch.dtype:
    """``"float32"`` etc. to a ``torch.dtype``; the error lists the valid names."""
    if name not in DTYPES:
        raise ProbeInputError(f"dtype should be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def parse_device(name: str) -> torch.device:
    """A ``torch.device`` that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ProbeInputError(f"device should be a torch device such as 'cpu' or 'cuda:0', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProbeInputError(f"device {name!r} asked for, but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ProbeInputError(f"device {name!r} asked for, but MPS is not available on this machine")
    return device


def load_model_and_tokenizer(
    model_dir,
    gguf_file: Optional[str] = None,
    device: str = "cpu",
    dtype: str = "float32",
    tokenizer_dir=None,
    trust_remote_code: bool = False,
):
    """Load ``(model, tokenizer)`` from a ``save_pretrained`` folder (or a GGUF file inside it).

    Args:
        model_dir: the folder.
        gguf_file: a GGUF file name inside ``model_dir`` (dequantised on load; needs ``gguf``).
        device, dtype: where and in which dtype the model runs.
        tokenizer_dir: where to read the tokenizer when the model folder has none.
        trust_remote_code: allow custom modelling code shipped with the folder.

    Raises:
        ProbeInputError: missing folder or file, no config, not a causal LM, no tokenizer.
    """
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = Path(model_dir)
    torch_device, torch_dtype = parse_device(device), parse_dtype(dtype)
    if not path.exists():
        raise ProbeInputError(f"model folder not found: {str(path)!r}")
    if not path.is_dir():
        raise ProbeInputError(f"--model should be a folder written by save_pretrained, got the file {str(path)!r}")
    options: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            raise ProbeInputError(f"GGUF file {gguf_file!r} not found in {str(path)!r}")
        options["gguf_file"] = gguf_file
    elif not (path / "config.json").is_file():
        raise ProbeInputError(
            f"{str(path)!r} has no config.json: not a save_pretrained folder (pass --gguf-file for GGUF)"
        )

    try:
        config = AutoConfig.from_pretrained(path, **options)
    except (OSError, ValueError, KeyError) as error:
        raise ProbeInputError(f"cannot read the model config in {str(path)!r}: {one_line(error)}") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not trust_remote_code:
        raise ProbeInputError(
            f"the model in {str(path)!r} ({config.model_type!r}) has no causal LM head that "
            "AutoModelForCausalLM can load"
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **options)
    except (OSError, ValueError) as error:
        raise ProbeInputError(f"cannot load the model in {str(path)!r}: {one_line(error)}") from None
    tokenizer = load_tokenizer(tokenizer_dir if tokenizer_dir is not None else path, options)
    model = cast(Any, model).to(torch_device)  # transformers types .to() through a decorator mypy misreads
    return model.eval(), tokenizer


def has_tokenizer_files(path) -> bool:
    """Whether ``path`` holds tokenizer files (a Trainer without a tokenizer saves none)."""
    return any((Path(path) / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(path, options: dict):
    """``AutoTokenizer.from_pretrained(path, **options)``, with a clear error when there is none.

    A folder without tokenizer files (a Trainer run without a tokenizer saves none) is refused
    rather than handed to transformers, which may build a default tokenizer from the config.
    """
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise ProbeInputError(f"tokenizer folder not found: {str(path)!r}")
    if "gguf_file" not in options and not has_tokenizer_files(path):
        raise ProbeInputError(f"no tokenizer files in {str(path)!r}; pass --tokenizer DIR")

    try:
        return AutoTokenizer.from_pretrained(path, **options)
    except (OSError, ValueError, TypeError) as error:
        raise ProbeInputError(
            f"cannot load a tokenizer from {str(path)!r} ({one_line(error)}); pass --tokenizer DIR"
        ) from None
