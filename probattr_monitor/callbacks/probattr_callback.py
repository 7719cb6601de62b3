"""``ProbAttrCallback``: the probes at each checkpoint of a Hugging Face ``Trainer`` run.

Orchestration only: it decides *when* to probe, calls :func:`probattr_monitor.probe` (the same
entry point as the CLI and the sweep), hands the numbers to the sinks and writes ``probattr.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

from transformers import TrainerCallback

from ..metrics import run_summary
from ..probe_run import ProbeRun, probe_record, run_probes
from ..probes.settings import ProbeSettings
from ..prompts import paper_prompts, read_prompts_file
from ..run_record import run_record
from ..sinks import REPORT_TARGETS
from .state import preserved_training_state

RESPONSE_MODES = ("generate", "fixed")
METRIC_PREFIX = "probattr_"


class ProbAttrCallback(TrainerCallback):
    """Run probabilistic-attribution probes on a fixed prompt set during training, and log them.

    At each checkpoint save (and optionally every N steps and at each evaluation) the model is
    probed on the prompt set: per-token AS, entropies, KL and noise flags, summarised as noise
    tokens. Rank 0 logs scalars, histograms, figures and a token table to TensorBoard and/or W&B
    at the Trainer's ``global_step``, and writes ``probattr.json`` into the checkpoint folder.

    Args:
        prompts: the prompt set: ``None`` (the paper's seven prompts), a list of strings, or the
            path of a UTF-8 file with one prompt per line.
        responses: ``"generate"`` (default: each checkpoint's own greedy continuation, as the
            paper does), ``"fixed"`` (the continuations of the first probed checkpoint, kept for
            every later one), or a list with one response per prompt (the same text every time).
        max_new_tokens: length of generated responses.
        every_n_steps: also probe every N optimizer steps (``None``: only at saves / evaluations).
        on_save: probe at every checkpoint save (default ``True``).
        on_evaluate: probe at every evaluation and add ``eval_probattr_*`` metrics (``noise_tokens``,
            ``noise_fraction``, ...) so ``metric_for_best_model="probattr_noise_tokens"`` works.
            ``None`` (default): only when ``metric_for_best_model`` names a ``probattr_`` metric.
        report_to: ``"auto"`` (follow ``TrainingArguments.report_to``), ``"none"``, ``"all"``, or
            one or a list of ``"tensorboard"``, ``"wandb"``.
        logging_dir: TensorBoard folder; default: the Trainer's TensorBoard writer when it has
            one, else where it would write (``$TENSORBOARD_LOGGING_DIR`` or ``output_dir/runs/...``).
        tokenizer: the tokenizer, when the Trainer has no ``processing_class``.
        strict: re-raise exceptions from the probes instead of warning and counting them.
        as_band, entropy_threshold, noise_entropy, candidates, candidate_budget, memory_budget_mb:
            probe settings (see :class:`~probattr_monitor.ProbeSettings`; ``candidates="auto"`` by
            default: exact up to ``candidate_budget`` vocabulary entries (768 unless set), budgeted
            beyond); or pass ``settings`` whole.
        log_figures: log the entropy-vs-AS figure and per-prompt AS heat-maps (needs matplotlib;
            ``None``: when matplotlib is installed).
        write_json: write ``probattr.json`` into each checkpoint folder probed at a save.

    Example:
        >>> from probattr_monitor import ProbAttrCallback
        >>> callback = ProbAttrCallback(prompts=["The capital of France is"], every_n_steps=100)
        >>> callback.every_n_steps
        100
    """

    def __init__(
        self,
        prompts: Union[None, str, os.PathLike, Sequence[str]] = None,
        responses: Union[str, Sequence[str]] = "generate",
        max_new_tokens: int = 20,
        every_n_steps: Optional[int] = None,
        on_save: bool = True,
        on_evaluate: Optional[bool] = None,
        report_to: Union[str, Sequence[str]] = "auto",
        logging_dir: Optional[str] = None,
        tokenizer=None,
        strict: bool = False,
        as_band: Optional[float] = None,
        entropy_threshold: Optional[float] = None,
        noise_entropy: Optional[str] = None,
        candidates: Optional[str] = None,
        candidate_budget: Optional[int] = None,
        memory_budget_mb: Optional[float] = None,
        settings: Optional[ProbeSettings] = None,
        log_figures: Optional[bool] = None,
        write_json: bool = True,
    ) -> None:
        self.prompts = _prompt_set(prompts)
        self.response_mode, self.responses = _response_mode(responses, len(self.prompts))
        overrides = {"max_new_tokens": max_new_tokens, "as_band": as_band, "entropy_threshold": entropy_threshold,
                     "noise_entropy": noise_entropy, "candidates": candidates, "candidate_budget": candidate_budget,
                     "memory_budget_mb": memory_budget_mb}
        self.settings = (settings or ProbeSettings()).replace(
            progress=False, **{name: value for name, value in overrides.items() if value is not None}
        )
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int)
                                          or every_n_steps < 1):
            raise ValueError(f"every_n_steps should be a positive integer or None, got {every_n_steps!r}")
        for name, value in (("on_save", on_save), ("strict", strict), ("write_json", write_json)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} should be True or False, got {value!r}")
        if on_evaluate is not None and not isinstance(on_evaluate, bool):
            raise ValueError(f"on_evaluate should be True, False or None, got {on_evaluate!r}")
        if log_figures is not None and not isinstance(log_figures, bool):
            raise ValueError(f"log_figures should be True, False or None, got {log_figures!r}")
        self.report_to = _report_targets(report_to)
        self.every_n_steps = every_n_steps
        self.probe_on_save = on_save
        self.probe_on_evaluate = on_evaluate
        self.logging_dir = logging_dir
        self.tokenizer = tokenizer
        self.strict = strict
        self.log_figures = log_figures
        self.write_json = write_json
        self.errors = 0
        self._sinks: list = []
        self._last: Optional[ProbeRun] = None  # the latest probe run
        self._logged_steps: set[int] = set()

    # ---- Trainer events ----
    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        """Check the inputs against the model and tokenizer (fail early), then open the sinks."""
        from ..probing import prepare_inputs

        self.tokenizer = self.tokenizer if self.tokenizer is not None else processing_class
        if self.tokenizer is None or not callable(self.tokenizer):
            raise ValueError(
                "ProbAttrCallback needs a tokenizer: pass ProbAttrCallback(tokenizer=...) or give the Trainer a "
                f"processing_class (got {type(self.tokenizer).__name__})"
            )
        if getattr(self.tokenizer, "tokenizer", None) is not None and not hasattr(self.tokenizer, "encode"):
            self.tokenizer = self.tokenizer.tokenizer  # a processor: use its tokenizer
        prepare_inputs(model, self.tokenizer, self.prompts, self.responses, self.settings)
        if self.probe_on_evaluate is None:
            metric = (args.metric_for_best_model or "").removeprefix("eval_")
            self.probe_on_evaluate = metric.startswith(METRIC_PREFIX)
        if state.is_world_process_zero and not self._sinks:
            self._sinks = self._open_sinks(args)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_n_steps is not None and state.global_step % self.every_n_steps == 0:
            self._probe(args, state, model)

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        """Probe and add ``eval_probattr_*`` to ``metrics``, which best-model selection reads.

        (``Trainer.evaluate`` has already logged ``metrics`` when this runs, so these keys reach
        ``metric_for_best_model`` but not the Trainer's loggers; the sinks log them instead.)
        """
        if not self.probe_on_evaluate:
            return
        run = self._probe(args, state, model)
        if metrics is not None and run.error is None:
            summary = run_summary(run.results)
            for key in ("noise_tokens", "noise_fraction", "mean_attribution", "mean_entropy_context", "mean_kl"):
                if summary[key] is not None:
                    metrics[f"eval_{METRIC_PREFIX}{key}"] = summary[key]

    def on_save(self, args, state, control, model=None, **kwargs):
        """Probe (or reuse this step's run) and write ``probattr.json`` into the new checkpoint."""
        if not self.probe_on_save:
            return
        run = self._probe(args, state, model)
        if self.write_json and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                run_record(run, self.prompts, self.response_mode, self.settings, folder, write=True,
                           responses=self.responses)

    def on_train_end(self, args, state, control, **kwargs):
        for sink in self._sinks:
            sink.close()
        self._sinks = []

    # ---- the probes ----
    def _probe(self, args, state, model) -> ProbeRun:
        """Probe once per global step (a save, an evaluation and every_n_steps may coincide)."""
        if self._last is not None and self._last.step == state.global_step:
            return self._last
        from ..distributed import world

        with preserved_training_state(model):
            run = run_probes(model, self.tokenizer, self.prompts, self.responses, self.settings,
                             step=state.global_step, strict=self.strict, distributed=world()[1] > 1)
        if run.error is not None:
            self.errors += 1
        if self.response_mode == "fixed" and self.responses is None and run.results:
            self.responses = [r.response for r in run.results]
        self._last = run
        if state.is_world_process_zero and self._sinks and run.step not in self._logged_steps:
            self._logged_steps.add(run.step)
            record = probe_record(run, self.settings, errors=self.errors, figures=self.log_figures)
            for sink in self._sinks:
                sink.write(record)
        return run

    # ---- sinks ----
    def _open_sinks(self, args) -> list:
        targets = self.report_to
        if targets == ("auto",):
            trainer_targets = args.report_to if isinstance(args.report_to, (list, tuple)) else [args.report_to]
            if "all" in trainer_targets:
                targets = REPORT_TARGETS
            else:
                targets = tuple(t for t in REPORT_TARGETS if t in trainer_targets)
        sinks = []
        if "tensorboard" in targets:
            from ..sinks.tensorboard import TensorBoardSink

            shared = _trainer_tensorboard_writer() if self.logging_dir is None else None
            sinks.append(TensorBoardSink(log_dir=self.logging_dir or _tensorboard_dir(args), writer=shared))
        if "wandb" in targets:
            from ..sinks.wandb import WandbSink

            sinks.append(WandbSink(dir=args.output_dir))
        return sinks


def _prompt_set(prompts) -> tuple[str, ...]:
    if prompts is None:
        return tuple(paper_prompts())
    if isinstance(prompts, (str, os.PathLike)):
        if not Path(prompts).is_file():
            raise ValueError(
                f"prompts should be a list of prompts or the path of a prompts file; {str(prompts)!r} is not a file"
            )
        return tuple(read_prompts_file(prompts))
    prompt_list = list(prompts)
    if not prompt_list:
        raise ValueError("prompts should hold at least one prompt, got an empty list")
    for index, prompt in enumerate(prompt_list):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt {index} should be a non-empty string, got {prompt!r}")
    return tuple(prompt_list)


def _response_mode(responses, count: int):
    if isinstance(responses, str):
        if responses not in RESPONSE_MODES:
            raise ValueError(
                f"responses should be one of {', '.join(map(repr, RESPONSE_MODES))} or a list of {count} responses, "
                f"got {responses!r}"
            )
        return responses, None
    response_list = list(responses)
    if len(response_list) != count:
        raise ValueError(f"responses should hold one response per prompt ({count}), got {len(response_list)}")
    return "fixed", response_list


def _report_targets(report_to) -> tuple[str, ...]:
    valid = ("auto", "none", "all", *REPORT_TARGETS)
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    for name in names:
        if name not in valid:
            raise ValueError(f"report_to should be one or a list of {', '.join(map(repr, valid))}, got {name!r}")
    if "none" in names:
        return ()
    if "all" in names:
        return REPORT_TARGETS
    if names == ["auto"]:
        return ("auto",)
    if "auto" in names:
        raise ValueError(f"report_to 'auto' cannot be combined with other targets, got {names!r}")
    from ..sinks import require

    for name in names:
        require(name, name)  # each target's package has the target's name
    return tuple(dict.fromkeys(names))


def _tensorboard_dir(args) -> str:
    """Where transformers' TensorBoard callback writes: ``$TENSORBOARD_LOGGING_DIR`` or
    ``output_dir/runs/<time>_<host>``."""
    from transformers.integrations.integration_utils import default_logdir

    configured = os.getenv("TENSORBOARD_LOGGING_DIR")
    return os.path.expanduser(configured) if configured else os.path.join(args.output_dir, default_logdir())


def _trainer_tensorboard_writer():
    """The ``SummaryWriter`` of the Trainer's own TensorBoard callback, if it has one.

    Callbacks are not handed the Trainer, so this looks up the ``CallbackHandler`` that is
    calling us (one frame up the stack during ``on_train_begin``).
    """
    import inspect

    from transformers.integrations.integration_utils import TensorBoardCallback
    from transformers.trainer_callback import CallbackHandler

    frame = inspect.currentframe()
    try:
        while frame is not None:
            handler = frame.f_locals.get("self")
            if isinstance(handler, CallbackHandler):
                for callback in handler.callbacks:
                    if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
                        return callback.tb_writer
                return None
            frame = frame.f_back
    finally:
        del frame
    return None
