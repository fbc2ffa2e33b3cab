"""The conditional GAN baseline, conditioned on the base point."""

from __future__ import annotations

from torch import Tensor

from bundlenet.models.baselines.gan import GANBaseline


class CGAN(GANBaseline):
    r"""Conditional GAN :math:`x = G(z, \hat y)`, :math:`\hat y` the standardised base point.

    A fiber over y is :math:`\{G(z, \hat y) : z \sim N(0, I)\}`.
    """

    def condition_dim(self) -> int:
        return self.spec.base_dim

    def condition(self, base: Tensor) -> Tensor:
        return self.base_scaler(base)
