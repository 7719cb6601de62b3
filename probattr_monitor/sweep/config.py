"""A sweep's configuration and what it keys on: which checkpoints (``resolve_checkpoints``), where
their records go, the record a checkpoint already holds for this sweep's key, and the names of
the summary's files and columns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..checkpoints import Checkpoint, discover_checkpoints, explicit_checkpoints, select_steps
from ..errors import ProbeInputError, RunFolderError
from ..monitoring.decision import DEFAULT_RULE
from ..monitoring.record import CheckpointRecord, PromptSet, RecordKey, find_record, folder_records
from ..monitoring.statistics import drift_keys, summary_keys
from ..probes.inputs.vocabulary import Vocabulary
from ..probes.types.settings import ProbeSettings
from ..prompts import paper_prompts

SUMMARY_CSV = "sweep_summary.csv"


SUMMARY_JSON = "sweep_summary.json"


def row_keys() -> tuple:
    """The columns of a sweep's summary row: the checkpoint, every statistic declared in
    ``monitoring.statistics`` (registered ones included), the eval loss and the per-prompt
    ``log P(r|p)`` list."""
    return ("step", "checkpoint", "status", "error", *summary_keys(), *drift_keys(), "invalid_prompts", "eval_loss",
            "seconds", "reused", "prompt_log_p")


def csv_keys() -> tuple:
    """:func:`row_keys` less the per-prompt list, which stays in the JSON summary."""
    return row_keys()[:-1]


def __getattr__(name: str):
    """``ROW_KEYS`` and ``CSV_KEYS``, derived when read (:func:`row_keys`, :func:`csv_keys`)."""
    if name == "ROW_KEYS":
        return row_keys()
    if name == "CSV_KEYS":
        return csv_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


LOCK_FILE = ".probattr-sweep.lock"


@dataclass
class SweepConfig:
    """What to sweep and how; the probe settings are the callback's.

    Attributes:
        run_dir: a Trainer output folder with ``checkpoint-<step>`` folders (or ``None`` with
            ``checkpoints``).
        checkpoints: explicit model folders instead of discovery.
        steps: only these steps.
        out: write records, summaries and logs here instead of into the run / checkpoint folders.
        tokenizer: tokenizer folder for checkpoints that have no tokenizer files.
        prompts, responses: the prompt set; ``responses=None`` means greedy continuations.
        guard: ``(prompt, response)`` pairs scored for ``log P(r | p)`` only (the guard set).
        settings: :class:`ProbeSettings`.
        report_to: trackers of ``sinks.REPORT_TARGETS``.
        rule: the recommendation rule (``monitoring.decision.RULES``).
        dtype: the dtype checkpoints are probed in; ``None`` (default): each checkpoint's own
            (``config.json``), as the callback probed it during training.
        base_model: the base model of adapter checkpoints (a folder or a ``.gguf`` file), when
            their ``adapter_config.json`` does not name a local one.
        reference, reference_vocabulary: the model whose greedy responses were frozen as token ids
            (``--reference``) and its tokenizer's vocabulary; a checkpoint whose tokenizer has
            another is refused (:func:`check_reference_vocabulary`), since the ids would be scored as
            text nobody wrote.
    """

    run_dir: Optional[str] = None
    checkpoints: Optional[Sequence[str]] = None
    steps: Optional[Sequence[int]] = None
    out: Optional[str] = None
    tokenizer: Optional[str] = None
    prompts: Sequence[str] = field(default_factory=paper_prompts)
    responses: Optional[Sequence] = None
    guard: Optional[Sequence] = None
    settings: ProbeSettings = field(default_factory=lambda: ProbeSettings(progress=False))
    report_to: Sequence[str] = ()
    device: str = "auto"
    dtype: Optional[str] = None
    trust_remote_code: bool = False
    progress: bool = True
    report: bool = True
    rule: str = DEFAULT_RULE
    base_model: Optional[str] = None
    reference: Optional[str] = None
    reference_vocabulary: Optional[Vocabulary] = None

    @property
    def prompt_set(self) -> PromptSet:
        """The :class:`PromptSet` this sweep probes (prompts, responses or their mode, guard set)."""
        return PromptSet.of(self.prompts, self.responses, guard=self.guard)

    def key_for(self, checkpoint: Checkpoint, settings: Optional[ProbeSettings] = None) -> RecordKey:
        """What a record of ``checkpoint`` must match to be reused or summarised by this sweep:
        the settings (``settings``, default :attr:`settings`: the watcher's plan for that
        checkpoint), the prompt set, the dtype it is probed in and the policy its vocabulary gets."""
        from ..errors import InputError
        from ..loading import checkpoint_profile

        try:
            own_dtype, vocab_size = checkpoint_profile(checkpoint.path, self.base_model)
        except (InputError, OSError):  # a broken checkpoint: its own probe fails and says why, the others go on
            own_dtype, vocab_size = None, None
        settings = settings or self.settings
        policy = settings.policy_for(vocab_size) if vocab_size is not None else None
        return RecordKey.of(settings, self.prompt_set, self.dtype or own_dtype or "float32", policy)


@dataclass
class SweepSummary:
    """What a sweep found: one row per checkpoint (:func:`row_keys`), the recommendation, and which
    checkpoints this sweep computed or reused."""

    rows: list
    recommended: Optional[dict]
    output_dir: Path
    computed: list = field(default_factory=list)
    reused: list = field(default_factory=list)

    @property
    def failed(self) -> int:
        """How many checkpoints failed (the CLI then exits 3)."""
        return sum(1 for row in self.rows if row["status"] != "ok")


def frozen_by_the_run(checkpoints: Sequence[Checkpoint], prompts: Sequence) -> Optional[tuple[list, Optional[list]]]:
    """``(responses, guard)`` the callback froze for ``prompts`` in these checkpoints' records (the
    latest ``ok`` fixed-mode record whose prompts are these and whose responses are all frozen), so
    a sweep of a run the callback probed scores the same responses and reuses its records; ``None``
    when no record has them."""
    wanted = PromptSet.of(prompts).to_dict()["prompts"]
    for checkpoint in reversed(list(checkpoints)):
        for record in folder_records(checkpoint.path):
            prompt_set = record.prompt_set
            responses = prompt_set.get("responses")
            if record.ok and prompt_set.get("response_mode") == "fixed" and prompt_set.get("prompts") == wanted \
                    and isinstance(responses, list) and all(r is not None for r in responses):
                guard = prompt_set.get("guard")
                return list(responses), None if guard is None else [tuple(pair) for pair in guard]
    return None


def resolve_checkpoints(config: SweepConfig) -> list[Checkpoint]:
    """The checkpoints to sweep, in step order (see ``checkpoints.py``)."""
    if config.checkpoints:
        found = explicit_checkpoints(config.checkpoints)
    elif config.run_dir is not None:
        found = discover_checkpoints(config.run_dir)
    else:
        raise RunFolderError("give a run folder or --checkpoints DIR [DIR ...]")
    return select_steps(found, config.steps)


def output_dir(config: SweepConfig, checkpoints: Sequence[Checkpoint]) -> Path:
    """Where summaries go: ``out``, else the run folder (the first checkpoint's parent)."""
    folder = Path(config.out) if config.out else Path(config.run_dir or checkpoints[0].path.parent)
    if config.out:
        folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise RunFolderError(f"{str(folder)!r} is read-only; pass --out DIR for the results")
    return folder


def record_folder(config: SweepConfig, checkpoint: Checkpoint) -> Path:
    """Where a checkpoint's records live: beside it, or under ``out/<checkpoint name>/``."""
    return Path(config.out) / checkpoint.name if config.out else checkpoint.path


def read_record(config: SweepConfig, checkpoint: Checkpoint, key: RecordKey) -> Optional[CheckpointRecord]:
    """The checkpoint's record made with ``key`` (:meth:`SweepConfig.key_for`), else its
    ``probattr.json`` (made with another key), else ``None`` (see ``monitoring.record.find_record``)."""
    return find_record(record_folder(config, checkpoint), key)


def check_reference_vocabulary(config: SweepConfig, tokenizer, name: str) -> None:
    """Refuse (``ProbeInputError``, naming both) a tokenizer ``name`` whose vocabulary is not the
    ``--reference``'s: the frozen responses are the reference's token ids. Nothing to check
    without a reference."""
    if config.reference_vocabulary is None:
        return
    difference = config.reference_vocabulary.difference(Vocabulary.of(tokenizer))
    if difference is not None:
        raise ProbeInputError(
            f"the tokenizer of --reference {config.reference} and that of {name} differ ({difference}): the "
            "reference's responses, frozen as its token ids, would be scored as other text; use a reference "
            "with the run's tokenizer, or give the responses as text (--response, --responses-file)")


def check_run_vocabulary(config: SweepConfig, checkpoints: Sequence[Checkpoint]) -> None:
    """:func:`check_reference_vocabulary` before any checkpoint loads, on the run's tokenizer: the
    first checkpoint's own tokenizer files, else ``config.tokenizer``. Checkpoints without either
    (adapters on a base model) are checked as each loads."""
    from ..loading import has_tokenizer_files, load_tokenizer

    if config.reference_vocabulary is None or not checkpoints:
        return
    first = checkpoints[0]
    folder = first.path if has_tokenizer_files(first.path) else config.tokenizer
    if folder is None:
        return
    options = {"trust_remote_code": True} if config.trust_remote_code else {}
    name = first.name if folder == first.path else f"--tokenizer {folder}"
    check_reference_vocabulary(config, load_tokenizer(folder, options), name)
