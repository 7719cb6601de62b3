"""``ProbAttrCallback``: the probes at each checkpoint of a Hugging Face ``Trainer`` run.

Orchestration only: it decides *when* to probe, calls :func:`probattr_monitor.probe` (the same
entry point as the CLI and the sweep) through ``monitoring.run``, hands the numbers to the sinks
and writes ``probattr.json``. Its own state (frozen responses, error count, logged steps) is an
``ExportableState``: the Trainer saves it in every checkpoint's ``trainer_state.json`` and the
callback takes it back when training resumes from that checkpoint.

Longer than 300 lines because it is one class whose Trainer hooks share the run's state (the frozen
responses, the sinks, the last run); its argument checks, cost logs and writer discovery live in
``arguments``, ``cost`` and ``writers``.
"""

from __future__ import annotations

import logging
import math
import os
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, Trainer

from ..errors import InputError, one_line, warn_user
from ..monitoring.base_guard import BaseGuard, freeze_base_guard
from ..monitoring.convergence import drift
from ..monitoring.decision import what_the_recommendation_sees
from ..monitoring.fitting import fitted_settings, forward_rate
from ..monitoring.overhead import (
    DEFAULT_MAX_OVERHEAD,
    OVERHEAD_TAG,
    OverheadMeter,
    check_share,
    freeze_seconds,
    guard_pairs_that_fit,
    over_share,
    skipped_line,
    skips_run,
    step_seconds_estimate,
)
from ..monitoring.record import CheckpointRecord, PromptSet
from ..monitoring.run import ProbeRun, guard_likelihoods, log_entry_of, run_probes
from ..monitoring.statistics import drift_keys, summary_keys
from ..probes.inputs.tokens import vocab_size_of
from ..probes.types.settings import ProbeSettings
from ..sinks import GuardedSinks, open_sinks, tracker_names
from .arguments import (
    accepts_0_2_keywords,
    as_json,
    given_responses,
    guard_pairs,
    prompt_set,
    report_targets,
    settings_from,
    unusable_state,
)
from .cost import log_cost, log_time
from .integrations import IntegrationForwarder, handler_holding
from .state import preserved_training_state
from .writers import installed, tensorboard_dir, trainer_tensorboard_writer

METRIC_PREFIX = "probattr_"
logger = logging.getLogger("probattr_monitor")


class ProbAttrCallback(TrainerCallback, ExportableState):
    """Run probabilistic-attribution probes on a fixed prompt set during training, and log them.

    At each checkpoint save (and optionally every N steps and at each evaluation) the model is
    probed on the prompt set: per-token AS, entropies, KL and noise flags, summarised as noise
    tokens. Rank 0 logs scalars, histograms, figures and a token table to the trackers
    ``report_to`` names (TensorBoard, W&B, MLflow, trackio) at the Trainer's ``global_step``, and
    writes ``probattr.json`` into the checkpoint folder.

    Never harms the run it watches (unless ``strict=True``): a probe that raises, a sink that fails
    (a full disk, W&B with no API key) or a record that cannot be written becomes a warning and a
    count in ``probattr/errors``; a failing sink is disabled for the rest of the run.

    One rule for the arguments: *how* to probe is a :class:`~probattr_monitor.ProbeSettings`, given
    as ``settings=`` (every field, ``None`` included); the callback's own keywords say *what* to
    probe, *when*, and *where* to log. (The ten settings keywords of 0.2, ``max_new_tokens=`` ...,
    and ``on_save=`` / ``on_evaluate=`` still work in this release, with a ``FutureWarning``.)

    Args:
        prompts: the prompt set: ``None`` (the paper's seven prompts), one prompt (a string), or a
            list whose entries are strings or chat conversations (lists of ``{"role", "content"}``
            messages). A ``pathlib.Path`` is read as a prompts file, like ``prompts_file``.
        prompts_file: the path of a prompts file (one prompt per line, or JSONL: see
            ``prompts.read_prompts_file``), instead of ``prompts``.
        responses: one response text per prompt, scored at every checkpoint (the same text every
            time); ``None`` (default): the responses come from ``response_mode``.
        response_mode: ``"fixed"`` (default: each prompt's first valid, non-empty continuation,
            frozen as token ids and scored at every later checkpoint, kept across
            ``resume_from_checkpoint``: the guard set the recommendation and early stopping compare
            across checkpoints) or ``"generate"`` (each checkpoint's own greedy continuation, the
            paper's protocol: its ``log P(r | p)`` is the model's confidence in its own text, not
            comparable across checkpoints, so no decision uses it). Given ``responses`` are fixed.
            The record says which (``prompt_set.response_mode``).
        settings: a :class:`~probattr_monitor.ProbeSettings` (or its ``to_dict()``): every probe
            setting; default ``ProbeSettings()``. (The callback never shows a progress bar.)
        guard: the guard set, scored for ``log P(r | p)`` only, one forward per pair, at every probe
            run; ``ProbAttrEarlyStopping``'s regression test and the sweep's recommendation compare
            it across checkpoints with the probe prompts. ``"base"`` (default): 200 pairs frozen
            from the model at train begin, its own greedy answers as token ids
            (``monitoring.base_guard``: an instruct model answers the general prompt pack through
            its chat template, a base LM continues text it samples itself), kept across resume,
            and off, with one line in the log, when the model looks untrained (a run from
            scratch). Or ``(prompt, response)`` pairs, or the path of a JSONL file of
            ``{"prompt", "response"}`` objects; ``None``: no guard.
        every_n_steps: also probe every N optimizer steps (``None``: only at saves / evaluations).
        scopes_every_n_steps: also compute the Jacobian Scopes of ``settings.scopes`` alone every N
            steps (one forward and a few backward passes per prompt, no AS), logged as
            ``probattr/mean_<scope>_scope``; steps with a full probe run log them with it. Needs
            ``settings.scopes``. ``None`` (default): the scopes run only with the probes.
        probe_on_save: probe at every checkpoint save (default ``True``).
        probe_on_evaluate: probe at every evaluation and add ``eval_probattr_*`` metrics (``noise_tokens``,
            ``noise_fraction``, ...) so ``metric_for_best_model="probattr_noise_tokens"`` works.
            ``None`` (default): only when ``metric_for_best_model`` names a ``probattr_`` metric.
            A failed probe puts the worst value (``inf``, or ``-inf`` when greater is better) under
            that metric, so the Trainer never keeps a checkpoint whose probes failed.
        report_to: ``"auto"`` (follow ``TrainingArguments.report_to``), ``"none"``, ``"all"`` (every
            installed one), or one or a list of the Trainer's ``report_to`` names. ``"tensorboard"``,
            ``"wandb"``, ``"mlflow"`` and ``"trackio"`` have sinks here (scalars, histograms,
            figures, the token table; MLflow and trackio log into the run the Trainer's own
            integration started); every other one (``"comet_ml"``, ``"clearml"``, ``"dvclive"``,
            ``"neptune"``, ``"swanlab"``, ...) gets the scalars through the Trainer's own
            integration callback, as it gets the loss (``callbacks.integrations``).
        logging_dir: TensorBoard folder of this callback's own writer (see ``tensorboard_writer``).
        tensorboard_writer: a ``SummaryWriter`` to share. Without one, the callback shares the
            Trainer's own writer (its ``TensorBoardCallback``'s), else writes its own where the
            Trainer would (``$TENSORBOARD_LOGGING_DIR`` or ``output_dir/runs/<time>_<host>``).
        tokenizer: the tokenizer, when the Trainer has no ``processing_class``.
        strict: re-raise exceptions from the probes, the sinks and record writing.
        log_figures: log the entropy-vs-AS figure and per-prompt AS heat-maps (needs matplotlib;
            ``None``: when matplotlib is installed).
        write_json: write ``probattr.json`` into each checkpoint folder probed at a save.
        max_overhead: the probes' share of the training time (default 0.05: 5%; ``None``: no limit,
            every run probes every position at the settings' budget). The callback measures the
            training seconds since train begin and its own, and fits each run into what is left
            (``monitoring.overhead``): ``log P(r | p)`` and the guard always run; the attribution
            scores get the rest, at a smaller candidate budget and a seeded sample of positions
            (the same positions at every checkpoint) when all do not fit, or at none until enough
            time has passed. The record says what ran (each result's ``positions_scored`` of
            ``positions_total``, its settings); the run statistics carry standard errors
            (``<key>_stderr``); ``probattr/overhead`` logs probe seconds per training second.

    Cost: at ``on_train_begin`` the ``probattr_monitor`` logger (INFO; its level follows the
    Trainer's ``log_level``) says what one probe run will cost in token-forwards, and after the first
    run how long it took; a run slower than a minute is a warning naming the knobs
    (``max_token_forwards``, ``candidate_budget``, fewer prompts). A long run logs its progress.

    Examples:
        >>> from probattr_monitor import ProbAttrCallback, ProbeSettings
        >>> callback = ProbAttrCallback(prompts=["The capital of France is"], every_n_steps=100,
        ...                             settings=ProbeSettings(max_new_tokens=5))
        >>> callback.every_n_steps, callback.settings.max_new_tokens
        (100, 5)
    """

    @accepts_0_2_keywords
    def __init__(
        self,
        prompts: Union[None, str, Path, Sequence[Any]] = None,
        responses: Optional[Sequence[str]] = None,
        *,
        prompts_file: Union[None, str, os.PathLike] = None,
        response_mode: str = "fixed",
        settings: Union[None, ProbeSettings, dict] = None,
        guard: Union[None, str, os.PathLike, Sequence] = "base",
        every_n_steps: Optional[int] = None,
        scopes_every_n_steps: Optional[int] = None,
        probe_on_save: bool = True,
        probe_on_evaluate: Optional[bool] = None,
        report_to: Union[str, Sequence[str]] = "auto",
        logging_dir: Optional[str] = None,
        tensorboard_writer: Any = None,
        tokenizer: Optional["PreTrainedTokenizerBase"] = None,
        strict: bool = False,
        log_figures: Optional[bool] = None,
        write_json: bool = True,
        max_overhead: Optional[float] = DEFAULT_MAX_OVERHEAD,
    ) -> None:
        self.prompts = prompt_set(prompts, prompts_file)
        given = given_responses(responses, response_mode, len(self.prompts))
        self.response_mode = response_mode
        self.guard_mode = "base" if isinstance(guard, str) and guard == "base" else (None if guard is None else "given")
        self.guard = None if self.guard_mode == "base" else guard_pairs(guard)
        self.base_guard: Optional[BaseGuard] = None  # guard="base": what was frozen at train begin
        self.settings = settings_from(settings).replace(progress=False)
        for name, steps in (("every_n_steps", every_n_steps), ("scopes_every_n_steps", scopes_every_n_steps)):
            if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
                raise InputError(f"{name} should be a positive integer or None, got {steps!r}")
        if scopes_every_n_steps is not None and not self.settings.scopes:
            raise InputError("scopes_every_n_steps needs the Jacobian Scopes to compute: "
                             "settings=ProbeSettings(scopes=('semantic', 'fisher', 'temperature'))")
        for name, value in (("probe_on_save", probe_on_save), ("strict", strict), ("write_json", write_json)):
            if not isinstance(value, bool):
                raise InputError(f"{name} should be True or False, got {value!r}")
        for name, option in (("probe_on_evaluate", probe_on_evaluate), ("log_figures", log_figures)):
            if option is not None and not isinstance(option, bool):
                raise InputError(f"{name} should be True, False or None, got {option!r}")
        self.report_to = report_targets(report_to)
        self.max_overhead = check_share("max_overhead", max_overhead)
        self.every_n_steps = every_n_steps
        self.scopes_every_n_steps = scopes_every_n_steps
        self.probe_on_save = probe_on_save
        self.probe_on_evaluate: Optional[bool] = probe_on_evaluate
        self.logging_dir = logging_dir
        self.tensorboard_writer = tensorboard_writer
        self.tokenizer: Any = tokenizer  # or the Trainer's processing_class (its tokenizer), at train begin
        self.strict = strict
        self.log_figures = log_figures
        self.write_json = write_json
        # What the run has learnt so far: saved in every checkpoint, restored on resume (state()).
        # responses: None in generate mode; else per prompt a text, frozen token ids, or None (not yet).
        self.responses: Optional[list] = list(given) if given is not None else (
            [None] * len(self.prompts) if self.response_mode == "fixed" else None)
        self._initial_responses = None if self.responses is None else list(self.responses)
        self.errors = 0
        self.logged_steps: list[int] = []
        self._listeners: list = []  # called with (run, state, control) after every probe run
        self._trainer_args: Any = None  # the TrainingArguments of the run this callback watches
        # current names only, so type(self)(**state["args"]) warns of nothing (_restore still reads 0.2's)
        self._args = {"prompts": list(self.prompts), "responses": None if given is None else list(given),
                      "response_mode": response_mode, "every_n_steps": every_n_steps,
                      "scopes_every_n_steps": scopes_every_n_steps, "probe_on_save": probe_on_save,
                      "probe_on_evaluate": probe_on_evaluate, "report_to": report_to if isinstance(report_to, str)
                      else list(report_to), "logging_dir": logging_dir, "strict": strict,
                      "settings": self.settings.to_dict(), "log_figures": log_figures, "write_json": write_json,
                      "max_overhead": self.max_overhead,
                      "guard": "base" if self.guard_mode == "base" else (
                          None if self.guard is None else [list(pair) for pair in self.guard])}
        self._sinks = GuardedSinks([], strict=strict)
        self._handler: Any = None  # the Trainer's CallbackHandler (attach(), else found at train begin)
        self._forwarder = IntegrationForwarder(None, None, ())  # the Trainer's other trackers
        self._model_ref: Any = None  # a weak reference to the model trained
        self._trainer_state: Any = None  # the Trainer's TrainerState
        self._last: Optional[ProbeRun] = None  # the latest probe run
        self.cost: dict = {}  # what one probe run costs (api.cost.run_cost), known at train begin
        self._previous_results: list = []  # the latest results, for drift
        self.meter: Optional[OverheadMeter] = None  # probe seconds against training seconds (max_overhead)
        self._said_over = False  # the over-the-share line is said once per run
        self._base_guard_restored = False  # guard="base" taken back from the checkpoint resumed from
        self._guard_scored = 0  # how many guard pairs (the first ones) the latest run scored (max_overhead)
        self._skipped_step: Optional[int] = None  # the latest step whose run max_overhead skipped

    def attach(self, trainer: "Trainer") -> "ProbAttrCallback":
        """Add this callback to ``trainer`` (unless it is there already) and share the Trainer's own
        TensorBoard writer, so the probes appear in the same TensorBoard run as the loss. Returns self."""
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        self._handler = trainer.callback_handler
        return self

    @property
    def last_run(self) -> Optional[ProbeRun]:
        """The latest probe run (its step, results, drift and error), or ``None`` before the first."""
        return self._last

    @property
    def prompt_set(self) -> PromptSet:
        """The prompt set as it stands now (fixed responses frozen so far included)."""
        return PromptSet.of(self.prompts, self.responses, self.response_mode, guard=self.guard)

    # ---- state kept across resume (transformers' ExportableState) ----
    def state(self) -> dict:
        """``{"args", "attributes"}`` as ``ExportableState`` asks: the constructor's arguments (JSON;
        not the tokenizer or a writer) and what the run has learnt: frozen responses, errors, logged steps."""
        attributes = {"responses": self.responses, "errors": self.errors, "logged_steps": sorted(self.logged_steps)}
        if self.guard_mode == "base":  # the pairs frozen from the model at train begin: a resume keeps them
            attributes["base_guard"] = None if self.guard is None else [[p, list(r)] for p, r in self.guard]
        return {"args": dict(self._args), "attributes": attributes}

    def _restore(self, saved: Any, vocab_size: int) -> None:
        """Take back :meth:`state` saved in the checkpoint the run resumes from, if it is this
        callback's (same prompts and response mode) and every part of it is usable (responses
        that fit the prompts and the vocabulary, whole-number counts); else warn and start afresh.
        A state this callback cannot use never ends the run."""
        candidates = saved if isinstance(saved, list) else [saved]
        problem = "it was saved without this callback's state, or with other prompts"
        for entry in candidates:
            args = entry.get("args") if isinstance(entry, dict) else None
            attributes = entry.get("attributes") if isinstance(entry, dict) else None
            if not isinstance(args, dict) or args.get("prompts") != as_json(self.prompts) \
                    or not self._same_responses(args):
                continue
            problem = unusable_state(attributes, len(self.prompts), self.response_mode, vocab_size) or ""
            if problem:
                break  # (restore_callback_states_from_checkpoint may have set it already: undone below)
            assert isinstance(attributes, dict)
            self.responses = attributes.get("responses", self.responses)
            if self.guard_mode == "base" and isinstance(attributes.get("base_guard"), list):
                self.guard = [(pair[0], list(pair[1])) for pair in attributes["base_guard"]] or None
                self._base_guard_restored = True
            self.errors = attributes.get("errors", 0)
            self.logged_steps = list(attributes.get("logged_steps", []))
            return
        self.responses = None if self._initial_responses is None else list(self._initial_responses)
        self.errors, self.logged_steps = 0, []
        warn_user(f"probattr-monitor: the checkpoint this run resumes from holds no usable state of this "
                      f"callback ({problem}): fixed responses are chosen afresh", stacklevel=3)

    def _same_responses(self, args: dict) -> bool:
        """Whether saved constructor ``args`` asked for this callback's responses: the same
        ``response_mode`` and given texts, or (a 0.2 state) ``"responses"`` holding the mode, or
        the given texts in fixed mode."""
        given = self._args["responses"]
        if "response_mode" in args:
            return args["response_mode"] == self.response_mode and args.get("responses") == given
        return args.get("responses") == (self.response_mode if given is None else given)

    # ---- Trainer events ----
    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        """Check the inputs against the model and tokenizer (fail early), restore the state saved
        in the checkpoint training resumes from, then open the sinks."""
        from ..api.inputs import prepare_inputs

        self.tokenizer = self.tokenizer if self.tokenizer is not None else processing_class
        if self.tokenizer is None or not callable(self.tokenizer):
            raise InputError(
                "ProbAttrCallback needs a tokenizer: pass ProbAttrCallback(tokenizer=...) or give the Trainer a "
                f"processing_class (got {type(self.tokenizer).__name__})"
            )
        if getattr(self.tokenizer, "tokenizer", None) is not None and not hasattr(self.tokenizer, "encode"):
            self.tokenizer = self.tokenizer.tokenizer  # a processor: use its tokenizer
        self._trainer_args = args
        self._trainer_state = state
        if self.max_overhead is not None:
            self.meter = OverheadMeter(self.max_overhead)
            logger.info("probattr: the probes may take %.0f%% of the training time (max_overhead=%g); each run "
                        "scores what fits, the statistics with their standard errors", 100 * self.max_overhead,
                        self.max_overhead)
        self._model_ref = weakref.ref(model) if model is not None else None
        _LIVE.add(self)
        if self._handler is None:
            self._handler = self._guarded(lambda: handler_holding(self), "finding the Trainer's callbacks")
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if state.global_step > 0 and saved is not None:  # resuming: the state saved in that checkpoint
            self._restore(saved, vocab_size_of(model))
        encoded = prepare_inputs(model, self.tokenizer, self.prompts, self.responses, self.settings)
        self.cost = log_cost(args, model, encoded, self.settings)
        if self.guard_mode == "base" and not self._base_guard_restored:
            self._freeze_base_guard(model, state, encoded, kwargs.get("train_dataloader"))
        if state.is_world_process_zero:
            self._say_what_the_recommendation_sees(args)
        if self.probe_on_evaluate is None:
            metric = (args.metric_for_best_model or "").removeprefix("eval_")
            self.probe_on_evaluate = metric.startswith(METRIC_PREFIX)
        if state.is_world_process_zero and not self._sinks.sinks:
            self._sinks = self._open_sinks(args)
            self._forwarder = self._open_forwarder()

    def _say_what_the_recommendation_sees(self, args) -> None:
        """One line at train begin (``monitoring.decision.what_the_recommendation_sees``): a warning
        when the recommendation cannot tell forgetting from learning in this run."""
        eval_loss = str(getattr(args.eval_strategy, "value", args.eval_strategy)) != "no"
        fixed = len(self.prompts) if self.response_mode == "fixed" else 0
        statement, blind = what_the_recommendation_sees(eval_loss, fixed + len(self.guard or []))
        (logger.warning if blind else logger.info)("probattr: %s", statement)

    def _freeze_base_guard(self, model, state, encoded, train_dataloader) -> None:
        """``guard="base"``: freeze the model's own answers at train begin (``monitoring.base_guard``),
        or say in one line why not (an untrained model; a resume whose checkpoint holds none). Under
        ``max_overhead`` the freezing gets ``monitoring.overhead.freeze_seconds`` of the run's
        expected training time (its step time estimated from the model's measured forward rate and
        the tokens of a step)."""
        if state.global_step > 0:
            logger.warning("probattr: guard='base' is off for this run: it resumed from a checkpoint without the "
                           "frozen base guard, and the model now is not the base")
            return
        seconds = None
        if self.meter is not None:
            from .cost import tokens_per_step

            began = time.perf_counter()
            with preserved_training_state(model):
                self.meter.rate = self._guarded(lambda: forward_rate(model, encoded, self.settings),
                                                "timing the model")
            self.meter.probe_seconds += time.perf_counter() - began  # counts against the share
            step = step_seconds_estimate(tokens_per_step(self._trainer_args, train_dataloader), self.meter.rate)
            seconds = freeze_seconds(self.meter.share, state.max_steps, step)
        with preserved_training_state(model):
            self.base_guard = self._guarded(
                lambda: freeze_base_guard(model, self.tokenizer, self.settings, seconds=seconds),
                "freezing the base guard")
        if self.base_guard is not None and self.meter is not None:
            self.meter.probe_seconds += self.base_guard.seconds  # the freezing counts against the share
        if self.base_guard is not None:  # off: a warning-level line (seen at the Trainer's default level)
            (logger.warning if self.base_guard.untrained else logger.info)("probattr: %s", self.base_guard.describe())
            self.guard = list(self.base_guard.pairs) or None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        """Probe every N steps, and before a save or an evaluation that will want this step's probes
        (so the state the Trainer saves with the checkpoint already holds what this probe froze)."""
        every = self.every_n_steps is not None and state.global_step % self.every_n_steps == 0
        if every or self._due(control):
            self._probe(args, state, model, control)
        elif self.scopes_every_n_steps is not None and state.global_step % self.scopes_every_n_steps == 0:
            self._guarded(lambda: self._log_scopes(state, model), f"the Jacobian Scopes at step {state.global_step}")

    def _log_scopes(self, state, model) -> None:
        """The scopes alone (``monitoring.scope_run``), logged as ``probattr/mean_<scope>_scope`` at
        this step: cheap statistics between probe runs (a full run at this step logs them itself)."""
        from ..monitoring.metrics import PREFIX
        from ..monitoring.scope_run import scope_statistics

        with preserved_training_state(model):
            values = scope_statistics(model, self.tokenizer, self.prompts, self.responses, self.settings)
        if state.is_world_process_zero and values:
            self.log_scalars(state.global_step, {f"{PREFIX}/{key}": value for key, value in values.items()})

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self._due(control):
            self._probe(args, state, model, control)

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        """Probe (or reuse this step's run) and add ``eval_probattr_*`` to ``metrics``, which
        best-model selection reads.

        (``Trainer.evaluate`` has already logged ``metrics`` when this runs, so these keys reach
        ``metric_for_best_model`` but not the Trainer's loggers; the sinks log them instead.) When
        the probes failed or no prompt was valid, the metric the Trainer compares gets its worst value.
        """
        if not self.probe_on_evaluate:
            return
        run = self._probe(args, state, model, control, needed=True)
        if run is None or metrics is None:
            return
        summary = run.statistics if run.error is None else {}
        for key in (*summary_keys(), *drift_keys()):
            if summary.get(key) is not None:
                metrics[f"eval_{METRIC_PREFIX}{key}"] = summary[key]
        compared = args.metric_for_best_model or ""
        compared = compared if compared.startswith("eval_") else f"eval_{compared}"
        if compared.startswith(f"eval_{METRIC_PREFIX}") and compared not in metrics:
            metrics[compared] = -math.inf if args.greater_is_better else math.inf

    def on_save(self, args, state, control, model=None, **kwargs):
        """Probe (or reuse this step's run) and write ``probattr.json`` into the new checkpoint."""
        if not self.probe_on_save:
            return
        run = self._probe(args, state, model, control)
        if run is not None and self.write_json and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                began = time.perf_counter()
                self._guarded(lambda: self._record(run, model, folder.name).save(folder),
                              f"writing {folder / 'probattr.json'}")
                if self.meter is not None:  # the weights' fingerprint and the file count too
                    self.meter.count_outside_run(time.perf_counter() - began)

    def _record(self, run: ProbeRun, model, checkpoint: str) -> CheckpointRecord:
        """The record of ``run`` for ``checkpoint``, with the fingerprint of the weights it measured:
        taken here, at the save, not at every probe run (``every_n_steps`` runs write no record). The
        model saved at this step holds the weights the run probed at the end of the step."""
        from ..monitoring.provenance import weights_fingerprint

        record = CheckpointRecord.from_run(run, self.prompt_set, run.settings or self.settings, checkpoint)
        record.provenance["weights"] = weights_fingerprint(model) if model is not None else None
        record.provenance["guard"] = self._guard_source()
        return record

    def _guard_source(self) -> Optional[str]:
        """Which guard the records were scored with, in words (``None``: none)."""
        if self.guard is None:
            return None
        scored = f"; the first {self._guard_scored} scored (max_overhead)" if self.meter is not None else ""
        if self.guard_mode != "base":
            return f"given: {len(self.guard)} pairs{scored}"
        source = self.base_guard.source if self.base_guard is not None else "restored from the checkpoint resumed from"
        return f"base: {len(self.guard)} pairs frozen from the model at train begin ({source}){scored}"

    def on_train_end(self, args, state, control, **kwargs):
        self._sinks.close()
        _LIVE.discard(self)

    def add_listener(self, listener) -> None:
        """Call ``listener(run, state, control)`` after every probe run (once per step), whatever
        the order of the Trainer's callbacks: how ``ProbAttrEarlyStopping`` reads this monitor."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    # ---- the probes ----
    def _due(self, control) -> bool:
        saving = control.should_save and self.probe_on_save
        return bool(saving or (control.should_evaluate and self.probe_on_evaluate))

    def _probe(self, args, state, model, control=None, needed: bool = False) -> Optional[ProbeRun]:
        """Probe once per global step (a save, an evaluation and every_n_steps may coincide); the
        listeners hear of each new run with the ``control`` of the event that made it. Under
        ``max_overhead`` a run may be skipped (``monitoring.overhead.skips_run``) unless ``needed``
        (an evaluation reads its metric): ``None``, and this step's save writes no record.
        Everything the monitor does here counts against the share."""
        if self._last is not None and self._last.step == state.global_step:
            return self._last
        if self._skipped_step == state.global_step and not needed:
            return None
        from ..distributed import rank_zero_value, world

        began = time.perf_counter()
        with preserved_training_state(model):
            settings = self._guarded(lambda: self._planned(model), "fitting the probes into max_overhead",
                                     default=self.settings)
            needed = needed or bool(control is not None and control.should_evaluate and self.probe_on_evaluate)
            skip = self.meter is not None and skips_run(self.meter, settings, first=self._last is None, needed=needed)
            # every rank measured its own seconds: rank 0's plan, so the collective work has one shape
            settings, skip = rank_zero_value((settings, skip))
            if skip:
                self._skip(state, time.perf_counter() - began)
                return None
            guard = self._guarded(lambda: self._guard_for_run(model), "fitting the guard into max_overhead",
                                  default=self.guard)
            if guard is not None:  # rank 0's count, kept as this rank's too (the next run never scores fewer)
                guard = guard[:rank_zero_value(len(guard))]
                self._guard_scored = len(guard) if self.meter is not None else self._guard_scored
            run = run_probes(
                model,
                self.tokenizer,
                self.prompts,
                self.responses,
                settings,
                step=state.global_step,
                strict=self.strict,
                distributed=world()[1] > 1,
                guard=guard,
                fingerprint=False,  # taken only for the runs a record is written of (_record)
            )
        run.settings = settings
        if self.meter is not None:
            self.meter.record(run.step, run.seconds, run.results, run.guard_seconds, len(guard or []))
            said = over_share(self.meter, len(guard or []), len(self.prompts)) if not self._said_over else None
            if said is not None and state.is_world_process_zero:
                self._said_over = True
                logger.warning("probattr: %s", said)
        if self._last is None and run.error is None:
            log_time(run, warn=self.meter is None)
        invalid = [r for r in run.results if not r.valid]
        if invalid:
            warn_user(f"probattr-monitor: at step {run.step} the model gives non-finite logits on {len(invalid)} "
                          f"of {len(run.results)} probe prompts: training may have diverged ({invalid[0].error})",
                          stacklevel=3)
        if run.error is not None:
            self.errors += 1
        elif self._previous_results:
            run.drift = drift(self._previous_results, run.results)
        if run.results:
            self._previous_results = run.results
        self._freeze(run)
        self._last = run
        if (state.is_world_process_zero and (self._sinks.sinks or self._forwarder.callbacks)
                and run.step not in self.logged_steps):
            self.logged_steps.append(run.step)
            self._guarded(lambda: self._write_sinks(run), f"logging step {run.step}")
        for listener in list(self._listeners):
            self._guarded(lambda listen=listener: listen(run, state, control),
                          f"acting on the probes of step {run.step}")
        if self.meter is not None:  # the planning, timings, logging and listeners count too
            self.meter.count_outside_run(time.perf_counter() - began - run.seconds)
        return run

    def _skip(self, state, seconds: float) -> None:
        """This step's run is skipped (``monitoring.overhead.skips_run``): said once as a warning,
        then at debug level; the planning's ``seconds`` count against the share."""
        assert self.meter is not None
        self._skipped_step = state.global_step
        self.meter.skipped.append(state.global_step)
        self.meter.count_outside_run(seconds)
        if state.is_world_process_zero:
            (logger.warning if len(self.meter.skipped) == 1 else logger.debug)(
                "probattr: %s", skipped_line(self.meter, state.global_step))

    def _planned(self, model) -> ProbeSettings:
        """The settings of the next run: :attr:`settings` fitted into what ``max_overhead`` leaves
        (``monitoring.overhead.plan_run``); :attr:`settings` itself without a meter."""
        if self.meter is None:
            return self.settings
        return fitted_settings(self.meter, model, self.tokenizer, self.prompts, self.responses, self.settings)

    def _guard_for_run(self, model) -> Optional[list]:
        """The guard pairs the next run scores: all of them without a meter; else the first
        ``guard_pairs_that_fit`` (``monitoring.overhead``; the base guard is frozen in a seeded random
        order, so they are a uniform sample; a given guard is taken in its own order), timing two
        pairs first when no run has measured them yet (those seconds count against the share)."""
        if self.guard is None or self.meter is None:
            return self.guard
        if self.meter.guard_pair_seconds is None:  # (its seconds are counted with the run's: _probe)
            began = time.perf_counter()
            guard_likelihoods(model, self.tokenizer, self.guard[:2], self.settings)
            self.meter.guard_pair_seconds = (time.perf_counter() - began) / len(self.guard[:2])
        self._guard_scored = guard_pairs_that_fit(self.meter.likelihood_available(), self.meter.guard_pair_seconds,
                                                  self._guard_scored, len(self.guard))
        return self.guard[:self._guard_scored]

    def _freeze(self, run: ProbeRun) -> None:
        """In fixed mode, freeze each prompt's response the first time it is valid and non-empty:
        its token ids, exactly as scored (re-tokenising the text can give other ids)."""
        if self.response_mode != "fixed" or self.responses is None:
            return
        for index, result in enumerate(run.results):
            if self.responses[index] is None and result.valid and result.response_token_ids:
                text = self.tokenizer.decode(result.response_token_ids, skip_special_tokens=True)
                if text.strip():
                    self.responses[index] = [int(i) for i in result.response_token_ids]

    def log_scalars(self, step: int, scalars: dict) -> None:
        """Write ``{tag: value}`` at ``step`` through this callback's sinks (rank 0), guarded like
        every other write: other callbacks (``ProbAttrEarlyStopping``) log through here."""
        from ..sinks import LogEntry

        if self._sinks.sinks or self._forwarder.callbacks:
            self._guarded(lambda: self._write(LogEntry(step=step, scalars=dict(scalars))),
                          f"logging at step {step}")

    def _write_sinks(self, run: ProbeRun) -> None:
        entry = log_entry_of(run, run.settings or self.settings, errors=self.errors, figures=self.log_figures)
        overhead = self.meter.overhead() if self.meter is not None else None
        if overhead is not None:
            entry.scalars[OVERHEAD_TAG] = overhead
        self._write(entry)

    def _write(self, record) -> None:
        """Write ``record`` to every working sink and its scalars to the Trainer's other trackers;
        the sinks and trackers that fail are counted in ``errors``."""
        self.errors += self._sinks.write(record)
        model = self._model_ref() if self._model_ref is not None else None
        self.errors += self._forwarder.forward(self._trainer_args, self._trainer_state, record.step,
                                               record.scalars, model=model)

    def _guarded(self, work, what: str, default: Any = None) -> Any:
        """``work()``; unless ``strict``, an exception becomes a warning, a count in ``errors`` and
        ``default``."""
        try:
            return work()
        except Exception as error:  # noqa: BLE001 - the monitor never ends the run it watches
            if self.strict:
                raise
            self.errors += 1
            warn_user(f"probattr-monitor: {what} failed: {one_line(error)}", stacklevel=3)
            return default

    # ---- sinks ----
    def _open_sinks(self, args) -> GuardedSinks:
        targets, trackers = self.report_to, tracker_names()
        if targets == ("all",):
            targets = installed(trackers)
        elif targets == ("auto",):
            trainer_targets = args.report_to if isinstance(args.report_to, (list, tuple)) else [args.report_to]
            if "all" in trainer_targets:  # the Trainer's "all": every tracker installed
                targets = installed(trackers)
            else:
                targets = tuple(t for t in trackers if t in trainer_targets)
        targets = tuple(t for t in targets if t in trackers)  # the others are forwarded to
        writer = self.tensorboard_writer
        if writer is None and self.logging_dir is None:
            writer = trainer_tensorboard_writer(self._handler)
        sinks = self._guarded(lambda: open_sinks(targets, tensorboard_dir=self.logging_dir or tensorboard_dir(args),
                                                 tensorboard_writer=writer, wandb_dir=args.output_dir),
                              "opening the sinks (nothing will be logged)", default=[])
        return GuardedSinks(sinks, strict=self.strict)

    def _open_forwarder(self) -> IntegrationForwarder:
        """The Trainer's integrations that get the scalars (see ``callbacks.integrations``): those
        ``report_to`` names (all of the Trainer's for ``"auto"`` and ``"all"``), less the trackers
        with a sink here."""
        wanted = None if self.report_to in (("auto",), ("all",)) else self.report_to
        forwarder = self._guarded(lambda: IntegrationForwarder(self._handler, wanted, tracker_names(),
                                                               strict=self.strict),
                                  "finding the Trainer's trackers", default=None)
        return forwarder if forwarder is not None else IntegrationForwarder(None, None, ())


_LIVE: "weakref.WeakSet[ProbAttrCallback]" = weakref.WeakSet()  # monitors of the runs in progress


def monitors_of(args) -> list:
    """The :class:`ProbAttrCallback` instances watching the run whose ``TrainingArguments`` is
    ``args`` (each registers at ``on_train_begin``): how a callback the Trainer rebuilt from its
    saved arguments (``restore_callback_states_from_checkpoint``) finds its monitor."""
    return [monitor for monitor in list(_LIVE) if monitor._trainer_args is args]


