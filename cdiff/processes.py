"""The processes of one job: ``accelerate launch`` (or ``torchrun``) starts several, each does its share.

``cdiff generate`` and ``cdiff evaluate`` split their work by batches: the batches are those of one
process (the same images in each, so the same intermediates and the same bytes), dealt out in rounds
of one batch per process; after each round every process has every image made so far
(:meth:`Processes.gather`), and the main process (rank 0) alone writes files. A process that fails
ends the job: the launcher stops the others.

Nothing starts a process group until a job has more than one process (``WORLD_SIZE`` > 1), so a
plain ``cdiff generate`` never imports accelerate or touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def world_size() -> int:
    """How many processes this job has (1 when not launched by accelerate/torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class Processes:
    """This process's place in the job: ``index`` of ``count`` (the main process is 0)."""

    index: int = 0
    count: int = 1
    local_index: int = 0

    @property
    def main(self) -> bool:
        return self.index == 0

    def rounds(self, items: Sequence[T]) -> Iterator[T | None]:
        """This process's item of each round of ``count`` items (``None`` when the last round is short)."""
        for first in range(0, len(items), self.count):
            k = first + self.index
            yield items[k] if k < len(items) else None

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in process order (on every process)."""
        if self.count == 1:
            return [value]
        out: list[Any] = [None] * self.count
        torch.distributed.all_gather_object(out, value)
        return out

    def broadcast(self, value: T) -> T:
        """The main process's ``value``, on every process."""
        if self.count == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` on the main process only (``None`` elsewhere)."""
        return fn() if self.main else None


@cache
def current() -> Processes:
    """This process's :class:`Processes`; joins the job's process group the first time (gloo on CPUs,
    NCCL on GPUs, as accelerate chooses)."""
    count = world_size()
    if count == 1:
        return Processes()
    from accelerate import PartialState

    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    state = PartialState(cpu=cpu)
    return Processes(state.process_index, state.num_processes, state.local_process_index)


def local_index() -> int:
    """This process's index on its machine (``LOCAL_RANK``; 0 alone): which GPU ``--device auto`` takes."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


__all__ = ["Processes", "current", "local_index", "world_size"]
