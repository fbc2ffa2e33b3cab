"""Learning-rate schedules with the signature ``(optimizer, total_steps) -> LRScheduler``.

Models call ``scheduler(optimizer, total_steps=trainer.estimated_stepping_batches)``; configs
give these with ``_partial_: true``.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def cosine_with_warmup(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, final_fraction: float = 0.01) -> LambdaLR:
    """Linear warm-up for ``warmup_steps``, then cosine decay to ``final_fraction`` × the base rate."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def constant(optimizer: Optimizer, total_steps: int) -> LambdaLR:
    """No decay (the authors' effective schedule)."""
    return LambdaLR(optimizer, lambda step: 1.0)
