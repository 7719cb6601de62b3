"""TensorBoard sink: scalars with ``add_scalar`` (never ``add_scalars``, which makes one sub-run
folder per key), histograms and images on the writer itself (the Trainer's TensorBoard callback
drops non-scalars). A writer can be shared with the Trainer's own TensorBoard callback."""

from __future__ import annotations

from typing import Optional

from .base import LogEntry, Sink, SinkOptions, require


class TensorBoardSink(Sink):
    """Writes :class:`LogEntry` objects to TensorBoard event files in ``log_dir``.

    Args:
        log_dir: where to write (used when no ``writer`` is given).
        writer: an existing ``SummaryWriter`` to share; this sink then never closes it.
    """

    name = "tensorboard"

    @classmethod
    def from_options(cls, options: SinkOptions) -> "TensorBoardSink":
        """In ``options.tensorboard_dir``, or on ``options.tensorboard_writer`` when one is shared."""
        return cls(log_dir=options.tensorboard_dir, writer=options.tensorboard_writer)

    def __init__(self, log_dir: Optional[str] = None, writer=None) -> None:
        if writer is None:
            require("tensorboard", "tensorboard")
        self.log_dir = log_dir
        self._writer = writer
        self._owns_writer = writer is None

    @property
    def writer(self):
        """The ``SummaryWriter``, created on first use."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self.log_dir)
            self.log_dir = self._writer.log_dir
        return self._writer

    def write(self, record: LogEntry) -> None:
        """Write every scalar, histogram and image of ``record`` at ``record.step``."""
        import numpy as np

        writer = self.writer
        for tag, value in record.scalars.items():
            writer.add_scalar(tag, value, record.step)
        for tag, values in record.histograms.items():
            if len(values):
                writer.add_histogram(tag, np.asarray(values, dtype=np.float64), record.step)
        for tag, image in record.images.items():
            writer.add_image(tag, image, record.step, dataformats="HWC")
        writer.flush()

    def close(self) -> None:
        """Close the writer if this sink created it; idempotent."""
        if self._owns_writer and self._writer is not None:
            self._writer.close()
        self._writer = None
