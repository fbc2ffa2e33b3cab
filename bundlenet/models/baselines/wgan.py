"""The unconditional WGAN-div baseline."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from bundlenet.models.baselines.gan import GANBaseline


class WGAN(GANBaseline):
    r"""Unconditional WGAN-div: :math:`x = G(z)` learns the global distribution of E only.

    It never sees the base, so it cannot sample a fiber: ``conditional = False`` makes
    :meth:`sample_fiber` refuse and the evaluation reports its fiber metrics as not applicable;
    :meth:`sample` gives global samples. Its ``val/fiber_w2`` compares unconditional samples
    with each validation fiber. Defaults follow the authors: WGAN-div, 5 critic updates per
    generator update.
    """

    conditional = False

    def __init__(self, spec: Any, n_critic: int = 5, **kwargs: Any) -> None:
        super().__init__(spec, n_critic=n_critic, **kwargs)

    def condition_dim(self) -> int:
        return 0

    def condition(self, base: Tensor) -> Tensor:
        return base.new_zeros(base.shape[0], 0)
