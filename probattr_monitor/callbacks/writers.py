"""Where the callback's sinks write: the installed trackers, TensorBoard's folder, and the
Trainer's own TensorBoard writer to share."""

from __future__ import annotations

import os
from typing import Sequence


def installed(targets: Sequence[str]) -> tuple[str, ...]:
    """The targets (registered trackers, ``sinks.base.TRACKERS``) whose package is installed."""
    from ..sinks import tracker_named

    return tuple(t for t in targets if tracker_named(t).installed())


def tensorboard_dir(args) -> str:
    """Where transformers' TensorBoard callback writes: ``$TENSORBOARD_LOGGING_DIR`` or
    ``output_dir/runs/<time>_<host>``."""
    from transformers.integrations.integration_utils import default_logdir

    configured = os.getenv("TENSORBOARD_LOGGING_DIR")
    return os.path.expanduser(configured) if configured else os.path.join(args.output_dir, default_logdir())


def trainer_tensorboard_writer(handler):
    """The ``SummaryWriter`` of the Trainer's own TensorBoard callback in ``handler`` (the
    ``CallbackHandler`` given by :meth:`ProbAttrCallback.attach`), or ``None``."""
    if handler is None:
        return None
    from transformers.integrations.integration_utils import TensorBoardCallback

    for callback in handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
            return callback.tb_writer
    return None
