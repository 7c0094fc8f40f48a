"""Dynamic batching: requests that arrive together run as one TensorFlow call.

``BatchingSettings`` says how (TensorFlow Serving's names); ``batched(name, cell,
settings)`` wraps a cell in a ``BatchingCell``. Pure numpy and threads: no TensorFlow.
"""

from __future__ import annotations

import logging

from tfhost.batching.auto import choose
from tfhost.batching.cell import QUEUE_BUCKETS, BatchingCell, BatchingStats
from tfhost.batching.settings import BatchingSettings
from tfhost.cells import Cell

__all__ = ["QUEUE_BUCKETS", "BatchingCell", "BatchingSettings", "BatchingStats", "batched"]

_log = logging.getLogger(__name__)


def batched(name: str, cell: Cell, settings: BatchingSettings) -> BatchingCell:
    """``cell`` with its runs batched; ``max_batch_size = "auto"`` is measured here, on the
    open cell, and what it chose is logged and kept (``BatchingStats.chosen``)."""
    if settings.max_batch_size != "auto":
        return BatchingCell(name, cell, settings, settings.max_batch_size)
    choice = choose(name, cell.run, cell.signatures, settings.auto_latency_bound)
    _log.info("model %r: max_batch_size auto: %d (%s)", name, choice.size, choice.why)
    return BatchingCell(name, cell, settings, choice.size, f"auto: {choice.why}")
