"""The conditional normalizing-flow baseline p(x | y), trained by maximum likelihood."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bundlenet.bundles.base import BundleSpec
from bundlenet.models.base import BundleModel, OptimizerFactory, SchedulerFactory
from bundlenet.nn.gaussian import standard_normal_log_prob
from bundlenet.nn.trivialization import Coupling, LocalTrivialization


class ConditionalFlow(BundleModel):
    r"""A conditional normalizing flow for the fibers: :math:`p(x \mid y)` with no cover.

    With :math:`\tilde x` the standardised x (padded with ε ~ N(0, I) up to D = max(d_E, 2)
    coordinates, since coupling layers need two) and :math:`\hat y` the standardised y,

    .. math::
        \log p(\tilde x \mid y) = \log N(f(\tilde x; \hat y); 0, I_D) + \log\lvert\det ∂f/∂\tilde x\rvert,

    f a :class:`~bundlenet.nn.trivialization.LocalTrivialization` (couplings whose subnets see
    :math:`\hat y`). Training maximises the likelihood of the training pairs; a fiber over y is
    :math:`f^{-1}(u; \hat y)`, u ~ N(0, I_D), keeping the first d_E coordinates.
    """

    has_density = True

    def __init__(
        self,
        spec: BundleSpec | dict[str, Any],
        num_blocks: int = 8,
        hidden_features: int = 96,
        depth: int = 2,
        coupling: Coupling = "rq_spline",
        num_bins: int = 8,
        tail_bound: float = 5.0,
        conditional_affine: bool = True,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(spec, optimizer, scheduler)
        self.save_options()
        self.features = max(self.spec.total_dim, 2)
        self.flow = LocalTrivialization(
            self.features,
            self.spec.base_dim,
            num_blocks=int(num_blocks),
            hidden_features=int(hidden_features),
            depth=int(depth),
            coupling=coupling,
            num_bins=int(num_bins),
            tail_bound=float(tail_bound),
            conditional_affine=bool(conditional_affine),
        )

    def _pad(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        extra = self.features - x.shape[1]
        if extra == 0:
            return x
        return torch.cat([x, torch.randn(x.shape[0], extra, generator=generator, device=x.device, dtype=x.dtype)], dim=1)

    def joint_log_prob(self, u: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """log p(ũ | y) of standardised points ``u [N, d_E]`` with one draw of the padding ε
        (included) over standardised ``y``: ``[N]``, the training objective."""
        return self.joint_log_prob_padded(self._pad(u, generator), y)

    def density_std(self, u: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """log p(u | y): exact for d_E ≥ 2 (no padding); for one column, log p(u, ε | y) − log q(ε)
        for one draw ε ~ N(0, 1), whose exponential is an unbiased estimate of p(u | y): ``[N]``."""
        padded = self._pad(u, generator)
        eps = padded[:, u.shape[1] :]
        return self.joint_log_prob_padded(padded, y) - standard_normal_log_prob(eps)

    def joint_log_prob_padded(self, padded: Tensor, y: Tensor) -> Tensor:
        z, logdet = self.flow(padded, y)
        return standard_normal_log_prob(z) + logdet

    def selection_score(self, fibers: Tensor, bases: Tensor) -> Tensor:
        """−mean log p(x̃ | y) of the validation points (cell centres, padding of a fixed seed)."""
        gen = torch.Generator(device=fibers.device).manual_seed(0)
        with torch.no_grad():
            u = self.standardize(fibers.reshape(-1, fibers.shape[-1]), dequantize=False, generator=gen)
            return -self.joint_log_prob(u, self.base_scaler(bases.reshape(-1, bases.shape[-1])), gen).mean()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        total, base = self.rank_share(*batch)
        loss = -self.joint_log_prob(self.standardize(total), self.base_scaler(base)).mean()
        self.check_loss(loss, "negative log-likelihood")
        self.log("train/nll", loss, batch_size=total.shape[0], prog_bar=True)
        self.log("train/loss", loss, batch_size=total.shape[0])
        return loss

    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        u = torch.randn(base.shape[0], self.features, generator=generator, device=base.device, dtype=base.dtype)
        x, _ = self.flow.inverse(u, self.base_scaler(base))
        return self.unstandardize(x[:, : self.spec.total_dim])
