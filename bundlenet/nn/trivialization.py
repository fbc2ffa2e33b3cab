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
from bundlenet.geometry import distinct_rows
from bundlenet.nn.fiber_prior import FiberLatent
from bundlenet.nn.spline import rational_quadratic_spline

Coupling = Literal["rq_spline", "affine"]


class SplineCoupling(PiecewiseRationalQuadraticCouplingTransform):
    """nflows' rational-quadratic spline coupling with linear tails (its parameters, its
    initialisation, its scaling of the width and height logits by √hidden_features), evaluated by
    :func:`bundlenet.nn.spline.rational_quadratic_spline`: the same function, without nflows'
    masked indexing."""

    def __init__(self, mask: Tensor, transform_net_create_fn: object, num_bins: int = 8, tail_bound: float = 5.0) -> None:
        super().__init__(mask, transform_net_create_fn, num_bins=num_bins, tails="linear", tail_bound=tail_bound)

    def _piecewise_cdf(self, inputs: Tensor, transform_params: Tensor, inverse: bool = False) -> tuple[Tensor, Tensor]:
        bins = self.num_bins
        scale = float(self.transform_net.hidden_features) ** 0.5
        return rational_quadratic_spline(
            inputs,
            transform_params[..., :bins] / scale,
            transform_params[..., bins : 2 * bins] / scale,
            transform_params[..., 2 * bins :],
            inverse=inverse,
            bound=float(self.tail_bound),
        )


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

    def _params(self, inputs: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if context is None:
            raise ValueError("ConditionalAffine needs a context")
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
                transforms.append(SplineCoupling(mask, subnet, num_bins=num_bins, tail_bound=tail_bound))
            else:
                transforms.append(AffineCouplingTransform(mask, subnet))
            transforms.append(RandomPermutation(features))
        self.features = features
        self.flow = CompositeTransform(transforms)

    def forward(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow(x, context)

    def inverse(self, u: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow.inverse(u, context)


class _ContextSlice(nn.Module):
    """A coupling subnet that sees a slice of the context (``None``: no context at all)."""

    def __init__(self, net: ConditionalMLP, context: slice | None) -> None:
        super().__init__()
        self.net = net
        self.context = context
        self.hidden_features = net.hidden_features  # read by nflows' spline couplings

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(inputs, None if self.context is None or context is None else context[:, self.context])


class _BaseConditioned(Transform):
    """A transform conditioned on the first ``features`` columns of the context only."""

    def __init__(self, transform: Transform, features: int) -> None:
        super().__init__()
        self.transform = transform
        self.features = features

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(inputs, None if context is None else context[:, : self.features])

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(inputs, None if context is None else context[:, : self.features])


class FiberFlow(nn.Module):
    r"""The fiber part of a local trivialization: local coordinates r ∈ R^D over a base point y
    → fiber latent z.

    .. math::
        f_y = F_L ∘ N_L ∘ ⋯ ∘ F_1 ∘ N_1 ∘ A_y,

    where :math:`A_y` is a :class:`ConditionalAffine` map conditioned on y, each :math:`N_i` a
    rational-quadratic coupling that transforms the *normal* coordinates ``r[span:]`` (the
    directions off the fiber) conditioned on the other coordinates and on y, and each
    :math:`F_i` a coupling that transforms half of the *fiber* coordinates ``r[:span]``
    conditioned on the other coordinates and, with ``chart_features > 0``, on a chart context
    (not on y itself). The fiber's shape is thereby shared by the base points of a neighbourhood
    (the local triviality of a bundle), while its position and how sharply samples lie on it
    follow y. There is no permutation: at initialisation (zero output layers) every step is the same
    monotone map of each coordinate on its own, so a fiber circle of the local frame, which
    already winds once around 0, still winds once around 0 in the starting latent.

    Shapes: ``forward(r [N, D], context [N, d_B + chart_features]) → (z, log|det ∂z/∂r| [N])``;
    ``inverse(z, context) → (r, log|det ∂r/∂z|)``. The context is ``[y, chart context]``.
    """

    likelihood_trained = True  # objective() is the negative log-likelihood

    def __init__(
        self,
        dim: int,
        span: int,
        base_features: int,
        chart_features: int = 0,
        num_blocks: int = 4,
        hidden_features: int = 96,
        depth: int = 2,
        num_bins: int = 8,
        tail_bound: float = 5.0,
    ) -> None:
        super().__init__()
        if not 1 <= span <= dim or dim < 2:
            raise InputError(f"the fiber flow needs 1 <= span <= dim and dim >= 2, got span={span}, dim={dim}")
        self.dim, self.span = dim, span
        self.base_features, self.chart_features = base_features, chart_features
        chart = slice(base_features, base_features + chart_features) if chart_features else None

        def coupling(mask: Tensor, context: slice | None, context_features: int) -> Transform:
            return SplineCoupling(
                mask,
                lambda i, o: _ContextSlice(ConditionalMLP(i, o, context_features, hidden_features, depth), context),
                num_bins=num_bins,
                tail_bound=tail_bound,
            )

        fiber = torch.arange(span)
        transforms: list[Transform] = [
            _BaseConditioned(ConditionalAffine(dim, base_features, hidden_features, depth), base_features)
        ]
        for i in range(num_blocks):
            if span < dim:
                normal = (torch.arange(dim) >= span).to(torch.int64)
                transforms.append(coupling(normal, slice(0, base_features), base_features))
            mask = torch.zeros(dim, dtype=torch.int64)
            mask[fiber[(fiber % 2) == (i % 2)] if span >= 2 else fiber] = 1
            transforms.append(coupling(mask, chart, chart_features))
        self.flow = CompositeTransform(transforms)

    def forward(self, r: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow(r, context)

    def inverse(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow.inverse(z, context)

    def decode(self, z: Tensor, context: Tensor) -> Tensor:
        """Latents ``z [N, D]`` → local coordinates ``[N, D]`` (the sampling direction)."""
        return self.flow.inverse(z, context)[0]

    def objective(self, r: Tensor, context: Tensor, latent: FiberLatent, generator: torch.Generator | None = None) -> Tensor:
        """−mean log p(r | context) of local coordinates ``r [N, D]`` under the latent (scalar)."""
        z, logdet = self.flow(r, context)
        return -(latent.log_prob(z) + logdet).mean()
