"""φ, the local trivialization: an invertible map of R^D conditioned on a neighbourhood.

This module is the only place that touches the flow library (nflows). Everything else sees
:class:`LocalTrivialization` with ``forward(x, context)`` and ``inverse(u, context)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from nflows.transforms import (
    AffineCouplingTransform,
    CompositeTransform,
    PiecewiseRationalQuadraticCouplingTransform,
    RandomPermutation,
    Transform,
)
from torch import Tensor, nn

from bundlenet.errors import InputError

Coupling = Literal["rq_spline", "affine"]


class ConditionalMLP(nn.Module):
    """``(inputs [N, p], context [N, c])`` → ``[N, q]``: concat, ReLU MLP.

    ``depth`` counts the hidden-to-hidden layers (the authors' ``nn_depth``): one input layer,
    ``depth`` hidden layers of width ``hidden_features``, one output layer. The output layer
    starts at zero so every coupling starts near the identity. The output has the dtype of
    ``inputs``: under mixed precision (``trainer.precision=bf16-mixed``) the matrix products run
    in bfloat16 while the coupling arithmetic around them (spline, scale, log-det) stays in
    float32.
    """

    def __init__(self, in_features: int, out_features: int, context_features: int, hidden_features: int, depth: int) -> None:
        super().__init__()
        self.hidden_features = hidden_features  # read by nflows' spline couplings to scale their logits
        layers: list[nn.Module] = [nn.Linear(in_features + context_features, hidden_features), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Linear(hidden_features, hidden_features), nn.ReLU()]
        self.out = nn.Linear(hidden_features, out_features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.body = nn.Sequential(*layers)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
        h = inputs if context is None else torch.cat([inputs, context], dim=1)
        return self.out(self.body(h)).to(inputs.dtype)


def distinct_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct rows of ``x [N, C]`` and, for each row, its index among them:
    ``(x[first] [U, C], index [N])`` with ``x == x[first][index]``. Differentiable in ``x``
    (the distinct rows are gathered from ``x``, not copies of it)."""
    _, index = torch.unique(x.detach(), dim=0, return_inverse=True)
    first = torch.full((int(index.max()) + 1 if index.numel() else 0,), x.shape[0], dtype=index.dtype, device=x.device)
    first = first.scatter_reduce(0, index, torch.arange(x.shape[0], device=x.device), reduce="amin")
    return x[first], index


class ConditionalAffine(Transform):
    r"""Elementwise affine map whose scale and shift depend only on the context.

    .. math:: u = x \odot \exp(s(c)) + t(c), \qquad \log|\det J| = \textstyle\sum_i s_i(c),

    with the soft clamp :math:`s = a \tanh(\tilde s / a)` (``a = clamp``). This is the authors'
    first layer, "the local affine chart" of a neighbourhood (FrEIA's ConditionalAffineTransform).
    Shapes: ``x [N, D]``, ``c [N, C]``.

    The subnet runs once per *distinct* context row and its output is gathered back to the N
    rows: a batch over K neighbourhoods costs K subnet evaluations instead of N (the result,
    and its gradient, are those of the per-row evaluation).
    """

    def __init__(self, features: int, context_features: int, hidden_features: int, depth: int, clamp: float = 2.0) -> None:
        super().__init__()
        self.features = features
        self.clamp = clamp
        self.net = ConditionalMLP(0, 2 * features, context_features, hidden_features, depth)

    def _params(self, inputs: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        distinct, row = distinct_rows(context)
        raw = self.net(inputs.new_zeros(distinct.shape[0], 0), distinct)[row]
        log_scale = self.clamp * torch.tanh(raw[:, : self.features] / self.clamp)
        return log_scale, raw[:, self.features :]

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_scale, shift = self._params(inputs, context)
        return inputs * log_scale.exp() + shift, log_scale.sum(dim=1)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_scale, shift = self._params(inputs, context)
        return (inputs - shift) * (-log_scale).exp(), -log_scale.sum(dim=1)


class LocalTrivialization(nn.Module):
    r"""φ: R^D → R^D, conditioned on a neighbourhood context ``c``.

    .. math::
        φ_c = P_L ∘ C_L ∘ ⋯ ∘ P_1 ∘ C_1 ∘ A_c

    where :math:`A_c` is an optional :class:`ConditionalAffine`, :math:`C_i` are nflows coupling
    layers (rational-quadratic splines with linear tails, or affine/RealNVP) whose subnets see
    the context, and :math:`P_i` are fixed random permutations. In a BundleNet the first
    ``d_B`` output coordinates are the base, the rest the fiber latent.

    Shapes: ``forward(x [N, D], c [N, C]) → (u [N, D], log|det ∂u/∂x| [N])``;
    ``inverse(u, c) → (x, log|det ∂x/∂u|)``.
    Reference: Courts & Kvinge, *Bundle Networks*, ICLR 2022, §4.
    """

    def __init__(
        self,
        features: int,
        context_features: int,
        num_blocks: int = 4,
        hidden_features: int = 64,
        depth: int = 2,
        coupling: Coupling = "rq_spline",
        num_bins: int = 8,
        tail_bound: float = 5.0,
        conditional_affine: bool = True,
    ) -> None:
        super().__init__()
        if features < 2:
            raise InputError(f"model.total_dim must be at least 2 for coupling layers, got {features}")
        if coupling not in ("rq_spline", "affine"):
            raise InputError(f"model.coupling must be 'rq_spline' or 'affine', got {coupling!r}")

        def subnet(in_features: int, out_features: int) -> nn.Module:
            return ConditionalMLP(in_features, out_features, context_features, hidden_features, depth)

        transforms: list[Transform] = []
        if conditional_affine:
            transforms.append(ConditionalAffine(features, context_features, hidden_features, depth))
        for i in range(num_blocks):
            mask = torch.arange(features) % 2 == i % 2
            if coupling == "rq_spline":
                transforms.append(
                    PiecewiseRationalQuadraticCouplingTransform(
                        mask, subnet, num_bins=num_bins, tails="linear", tail_bound=tail_bound
                    )
                )
            else:
                transforms.append(AffineCouplingTransform(mask, subnet))
            transforms.append(RandomPermutation(features))
        self.features = features
        self.flow = CompositeTransform(transforms)

    def forward(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow(x, context)

    def inverse(self, u: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow.inverse(u, context)
