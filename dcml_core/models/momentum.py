"""MoCo-style momentum key encoder and FIFO key queue, as DiVA / DCML use them (§2.3, §3.3).

MoCo: He et al., CVPR 2020, https://arxiv.org/abs/1911.05722.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn


class MomentumEncoder(nn.Module):
    """A frozen copy `key_model` of a network, updated by EMA over parameters: θ_k ← m·θ_k + (1 − m)·θ_q.

    The key model never receives gradients and is always in eval mode (DiVA `diva_main.py`; m = 0.9, §7 D9).
    Buffers (e.g. BN running statistics) are not averaged: they keep the values copied at construction.
    """

    def __init__(self, model: nn.Module, momentum: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.key_model = copy.deepcopy(model)
        for param in self.key_model.parameters():
            param.requires_grad_(False)
        self.key_model.eval()

    def train(self, mode: bool = True) -> MomentumEncoder:
        """Keep the key model in eval mode whatever `mode` is."""
        super().train(mode)
        self.key_model.eval()
        return self

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        """Run the key model without gradient."""
        return self.key_model(*args, **kwargs)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """EMA step from the query `model` (call after `optimizer.step()`)."""
        keys = list(self.key_model.parameters())
        queries = [p.detach() for p in model.parameters()]
        if len(keys) != len(queries) or any(k.shape != q.shape for k, q in zip(keys, queries)):
            raise ValueError(
                f"model does not match the key model: {len(queries)} vs {len(keys)} parameter tensors "
                f"or different shapes; pass the same network the encoder was built from"
            )
        torch._foreach_mul_(keys, self.momentum)
        torch._foreach_add_(keys, queries, alpha=1.0 - self.momentum)


class KeyQueue(nn.Module):
    """FIFO queue of keys (size, dim), oldest first: `enqueue(k)` is `queue = cat(queue[B:], k)` (DaNCE).

    `filled` counts the valid rows; they are the last `filled` rows of `queue`. Both are buffers, so the queue
    is in `state_dict` and a checkpoint resumes it exactly.
    """

    queue: torch.Tensor
    filled: torch.Tensor

    def __init__(self, dim: int, size: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dim <= 0 or size <= 0:
            raise ValueError(f"dim and size must be positive, got dim={dim}, size={size}")
        self.register_buffer("queue", torch.zeros(size, dim, dtype=dtype))  # (N, D)
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        """Capacity N."""
        return self.queue.shape[0]

    @property
    def is_full(self) -> bool:
        """Whether every row holds a key."""
        return int(self.filled) == self.size

    def keys(self) -> torch.Tensor:
        """The valid keys, oldest first: (filled, D)."""
        return self.queue[self.size - int(self.filled) :]

    def _check(self, keys: torch.Tensor) -> None:
        if keys.dim() != 2 or keys.shape[1] != self.queue.shape[1]:
            raise ValueError(f"keys must have shape (B, {self.queue.shape[1]}), got {tuple(keys.shape)}")

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Drop the oldest B rows and append `keys` (B, D) at the end."""
        self._check(keys)
        b = keys.shape[0]
        if b > self.size:
            raise ValueError(f"cannot enqueue {b} keys into a queue of size {self.size}")
        new = torch.cat((self.queue[b:], keys.detach().to(self.queue)))  # (N, D)
        self.queue.copy_(new)
        self.filled.fill_(min(self.size, int(self.filled) + b))

    @torch.no_grad()
    def fill(self, key_batches: Iterable[torch.Tensor]) -> None:
        """Pre-fill before epoch 0 with `n_key_batches` batches whose rows total exactly `size`.

        Deviation: the reference `create_memory_queue` crashes for n_key_batches = 1 (empty `torch.cat`);
        here one batch of `size` keys is accepted.
        """
        batches = list(key_batches)
        for batch in batches:
            self._check(batch)
        total = sum(batch.shape[0] for batch in batches)
        if total != self.size:
            raise ValueError(f"fill needs exactly {self.size} keys, got {total} in {len(batches)} batches")
        self.queue.copy_(torch.cat([batch.detach().to(self.queue) for batch in batches]))
        self.filled.fill_(self.size)
