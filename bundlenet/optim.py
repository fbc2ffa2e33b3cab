"""Learning-rate schedules with the signature ``(optimizer, total_steps) -> LRScheduler``.

Models call ``scheduler(optimizer, total_steps=trainer.estimated_stepping_batches)``; configs
give these with ``_partial_: true``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


@dataclass
class WarmupCosine:
    """The LR factor of step t: linear warm-up, then cosine decay to ``final_fraction``.

    .. math::
        f(t) = \\frac{t + 1}{w} \\ (t < w), \\qquad
        f(t) = φ + (1 - φ)\\,\\tfrac12\\bigl(1 + \\cos(π\\,\\min(1, \\tfrac{t - w}{T - w}))\\bigr) \\ (t \\ge w),

    with w = ``warmup_steps``, T = ``total_steps``, φ = ``final_fraction``. An object rather than
    a closure so that ``total_steps`` can be changed during training
    (:class:`~bundlenet.callbacks.FitToTime`) and is saved with the scheduler's state.
    """

    total_steps: int
    warmup_steps: int = 0
    final_fraction: float = 0.01

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.final_fraction + (1 - self.final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_with_warmup(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, final_fraction: float = 0.01) -> LambdaLR:
    """Linear warm-up for ``warmup_steps``, then cosine decay to ``final_fraction`` × the base rate (:class:`WarmupCosine`)."""
    return LambdaLR(optimizer, WarmupCosine(int(total_steps), int(warmup_steps), float(final_fraction)))
