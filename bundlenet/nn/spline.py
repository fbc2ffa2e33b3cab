r"""The monotone rational-quadratic spline with linear tails (Durkan et al., *Neural Spline
Flows*, NeurIPS 2019), element-wise and without masks.

On [−B, B] the spline has K bins with knots :math:`(x_k, y_k)`, k = 0..K, and derivatives
:math:`d_k > 0` at the knots (:math:`d_0 = d_K = 1`, so the identity outside [−B, B] continues it
smoothly). The widths and heights are softmaxes of their logits, each bin at least
``min_bin_width`` / ``min_bin_height`` of the interval; :math:`d_k = \text{min\_derivative} +
\text{softplus}(\cdot)`. In bin k, with :math:`s_k = (y_{k+1} - y_k) / (x_{k+1} - x_k)` and
:math:`\theta = (x - x_k) / (x_{k+1} - x_k)`,

.. math::
    g(x) = y_k + \frac{(y_{k+1} - y_k)\,[s_k \theta^2 + d_k \theta (1 - \theta)]}
                      {s_k + (d_{k+1} + d_k - 2 s_k)\,\theta (1 - \theta)},

its derivative :math:`s_k^2 [d_{k+1} \theta^2 + 2 s_k \theta(1-\theta) + d_k (1-\theta)^2] /
[s_k + (d_{k+1} + d_k - 2 s_k)\theta(1-\theta)]^2`, and its inverse the root in [0, 1] of a
quadratic in θ.

This is the function of ``nflows.transforms.splines.unconstrained_rational_quadratic_spline``
with ``tails="linear"`` (same parameters, same values; tested against it): it evaluates every
element on its clamped input and chooses the identity outside [−B, B] with ``torch.where``,
instead of indexing the elements inside, and takes softmaxes over the K bins as exp and sum,
which is several times faster than ``torch.softmax`` over a last dimension of 8 on a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


def _softmax(logits: Tensor) -> Tensor:
    e = (logits - logits.amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


def _knots(logits: Tensor, bound: float, minimum: float) -> tuple[Tensor, Tensor]:
    """Knot positions ``[..., K + 1]`` on [−bound, bound] and bin sizes ``[..., K]`` from logits ``[..., K]``."""
    bins = logits.shape[-1]
    sizes = minimum + (1 - minimum * bins) * _softmax(logits)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    knots = 2 * bound * knots - bound
    ends = torch.full_like(knots[..., :1], bound)  # the outer knots exactly at ±bound
    knots = torch.cat([-ends, knots[..., 1:-1], ends], dim=-1)
    return knots, knots[..., 1:] - knots[..., :-1]


def rational_quadratic_spline(
    inputs: Tensor,
    width_logits: Tensor,
    height_logits: Tensor,
    derivative_logits: Tensor,
    inverse: bool = False,
    bound: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """The spline g (or g⁻¹ with ``inverse``) at ``inputs [...]`` with logits ``[..., K]``,
    ``[..., K]`` and ``[..., K − 1]`` (the inner knots' derivatives): ``(outputs [...],
    log|dg/dx| [...])`` (for the inverse, log|dg⁻¹/dy|); the identity with log-derivative 0
    outside [−bound, bound]."""
    inside = (inputs >= -bound) & (inputs <= bound)
    x = inputs.clamp(-bound, bound)
    xs, widths = _knots(width_logits, bound, MIN_BIN_WIDTH)
    ys, heights = _knots(height_logits, bound, MIN_BIN_HEIGHT)
    edge = math.log(math.expm1(1 - MIN_DERIVATIVE))  # softplus(edge) + MIN_DERIVATIVE = 1
    derivatives = MIN_DERIVATIVE + F.softplus(F.pad(derivative_logits, (1, 1), value=edge))
    search = ys if inverse else xs
    k = (x.unsqueeze(-1) >= search[..., 1:-1]).sum(dim=-1, keepdim=True)

    def at(t: Tensor) -> Tensor:
        return t.gather(-1, k).squeeze(-1)

    x_k, y_k, w, h = at(xs), at(ys), at(widths), at(heights)
    s = h / w
    d0, d1 = at(derivatives), at(derivatives[..., 1:])
    if inverse:
        offset = x - y_k
        a = offset * (d0 + d1 - 2 * s) + h * (s - d0)
        b = h * d0 - offset * (d0 + d1 - 2 * s)
        c = -s * offset
        theta = (2 * c) / (-b - (b.pow(2) - 4 * a * c).clamp_min(0).sqrt())
        out = theta * w + x_k
    else:
        theta = (x - x_k) / w
    mix = theta * (1 - theta)
    denominator = s + (d0 + d1 - 2 * s) * mix
    log_derivative = (s.pow(2) * (d1 * theta.pow(2) + 2 * s * mix + d0 * (1 - theta).pow(2))).log() - 2 * denominator.log()
    if not inverse:
        out = y_k + h * (s * theta.pow(2) + d0 * mix) / denominator
    else:
        log_derivative = -log_derivative
    return torch.where(inside, out, inputs), torch.where(inside, log_derivative, torch.zeros_like(log_derivative))
