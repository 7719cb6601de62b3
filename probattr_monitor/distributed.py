"""Probing under ``torch.distributed`` (DDP via torchrun or ``accelerate launch``; gloo or NCCL).

Every rank runs the same code on the unwrapped model:
- each scores an equal share of the vocabulary, padded to the same length (the last id repeats),
  so every rank runs the same number of forwards with the same shapes (needed where parameters
  are sharded, FSDP or ZeRO-3, and each forward is itself collective);
- one status all-reduce per prompt, reached by every rank whether its work succeeded or raised:
  if any rank failed, all ranks raise instead of waiting forever in a gather;
- the shares are then all-gathered, so every rank holds the full result (rank 0 writes it).
"""

from __future__ import annotations

from typing import Callable, Optional, TypeVar, cast

import torch

from .errors import NonFiniteLogitsError

T = TypeVar("T")
_OK, _NON_FINITE, _FAILED = 0, 1, 2


class RemoteRankError(RuntimeError):
    """Another rank failed while probing; this rank stopped too instead of hanging."""


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an initialised process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def candidate_share(vocab_size: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's candidate ids: ``ceil(V / world)`` of them, the last id repeated as padding."""
    per_rank = -(-vocab_size // world_size)
    ids = torch.arange(rank * per_rank, (rank + 1) * per_rank)
    return ids.clamp(max=vocab_size - 1)


def _collective_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def run_collectively(work: Callable[[], T]) -> T:
    """Run ``work`` on this rank, then agree with every rank on whether all succeeded.

    Returns ``work()``'s value when every rank succeeded. Otherwise every rank raises: the rank
    that failed re-raises its own exception, the others :class:`NonFiniteLogitsError` (when that
    was the failure, so results are marked invalid consistently) or :class:`RemoteRankError`.
    """
    import torch.distributed as dist

    error: Optional[Exception] = None
    value: Optional[T] = None
    try:
        value = work()
        status = _OK
    except NonFiniteLogitsError as caught:
        error, status = caught, _NON_FINITE
    except Exception as caught:  # noqa: BLE001 - reported to every rank, then re-raised below
        error, status = caught, _FAILED
    flag = torch.tensor([status], device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    worst = int(flag.item())
    if worst == _OK:
        return cast(T, value)  # work() returned
    if error is not None:
        raise error
    if worst == _NON_FINITE:
        raise NonFiniteLogitsError("another rank saw non-finite logits (a diverged checkpoint?)")
    raise RemoteRankError("another rank failed while probing; see its log")


def gather_candidates(local: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """All-gather ``(P, C)`` shares along the candidate axis into ``(P, V)`` (padding dropped)."""
    import torch.distributed as dist

    device = _collective_device()
    local = local.to(device).contiguous()
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return torch.cat(parts, dim=-1)[:, :vocab_size].cpu()


def gather_objects(value: T) -> list[T]:
    """``[value of rank 0, value of rank 1, ...]`` on every rank (``all_gather_object``)."""
    import torch.distributed as dist

    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def rank_zero_value(value: T) -> T:
    """Rank 0's ``value`` on every rank (``value`` itself without a process group): what every rank
    must decide alike (how much a probe run scores, whether it runs) when each rank measured its
    own seconds, so the collective work that follows has the same shape on every rank."""
    if world()[1] == 1:
        return value
    return gather_objects(value)[0]
