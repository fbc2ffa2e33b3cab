r"""Columns keep their support: invertible per-column maps between a table's values and the
unconstrained space a model learns in.

For column j with support :class:`~bundlenet.bundles.base.ColumnSupport` (in the model's scaled
units), a model learns the distribution of :math:`u_j` and samples :math:`x_j = T_j(u_j)`:

* **discrete** values :math:`v_1 < \dots < v_m`: each value owns the cell between the midpoints
  to its neighbours; training data are *dequantized* (:math:`u` uniform in the cell of its value)
  and :math:`T` returns the value of the cell :math:`u` falls in, so samples take allowed values
  only, with the learned probability of each cell.
* **bounds** :math:`L` (lower) and/or :math:`U` (upper) without a point mass: a smooth bijection
  onto the open interval, the identity far from the bounds,

  .. math::
      T(u) = L + s\,\mathrm{softplus}\big((u - L)/s\big), \quad
      T(u) = U - s\,\mathrm{softplus}\big((U - u)/s\big), \quad
      T(u) = L + (U - L)\,\sigma\big(4(u - \tfrac{L+U}{2})/(U - L)\big),

  for a lower bound, an upper bound, or both (:math:`s` = 0.1 × the column's standard
  deviation).
* **point masses** at a bound (e.g. exact zeros): the bound is *censoring*, :math:`T(u) =
  \max(u, L)`; training rows at the bound are spread over :math:`[L - w, L)` (:math:`w` = 0.5 ×
  the column's standard deviation), so the learned mass below :math:`L` is the probability of
  the point mass, and samples equal :math:`L` exactly with that probability.

Shapes: ``forward(x [N, d]) → u [N, d]``, ``inverse(u [N, d]) → x [N, d]``. The per-column scales
are buffers fitted on the training data (:meth:`SupportTransform.fit`), so a checkpoint samples
inside the support on its own.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bundlenet.bundles.base import BundleSpec

_SMOOTH = 0.1  # softplus/sigmoid scale, × the column's standard deviation
_ATOM = 0.5  # width of the region a point mass is spread over, × the column's standard deviation
_INF = float("inf")
_SINGLE_CELL = 0.04  # width of the cell of a column's only value (scaled units)


class SupportTransform(nn.Module):
    """The per-column maps of the module docstring for the total columns of ``spec`` (scaled units).

    Columns without a support are passed through unchanged; a spec without supports gives the
    identity (``active`` is False).
    """

    lower: Tensor
    upper: Tensor
    atom_lower: Tensor
    atom_upper: Tensor
    scale: Tensor
    values: Tensor
    edges: Tensor
    num_values: Tensor

    def __init__(self, spec: BundleSpec) -> None:
        super().__init__()
        d = spec.total_dim
        supports = spec.total_support or ()
        offset = torch.tensor(spec.total_offset or [0.0] * d, dtype=torch.float64)
        factor = torch.tensor(spec.total_scale or [1.0] * d, dtype=torch.float64)

        def scaled(value: float | None, j: int, missing: float) -> float:
            return missing if value is None else float((value - offset[j]) / factor[j])

        lower, upper = torch.full((d,), -_INF), torch.full((d,), _INF)
        atom_lower, atom_upper = torch.full((d,), -_INF), torch.full((d,), _INF)
        width = max((len(s.values or ()) for s in supports), default=0)
        values = torch.zeros(d, max(width, 1))
        num_values = torch.zeros(d, dtype=torch.long)
        for j, support in enumerate(supports):
            if support.values is not None:
                v = torch.tensor([scaled(x, j, 0.0) for x in support.values]).sort().values
                values[j, : v.numel()] = v
                num_values[j] = v.numel()
                continue
            for bound, smooth, atom, missing in (
                (support.lower, lower, atom_lower, -_INF),
                (support.upper, upper, atom_upper, _INF),
            ):
                if bound is None:
                    continue
                target = atom if bound in support.atoms else smooth
                target[j] = scaled(bound, j, missing)
        self.active = any(not s.is_trivial for s in supports)
        self.register_buffer("lower", lower)
        self.register_buffer("upper", upper)
        self.register_buffer("atom_lower", atom_lower)
        self.register_buffer("atom_upper", atom_upper)
        self.register_buffer("scale", torch.ones(d))
        self.register_buffer("values", values)
        self.register_buffer("num_values", num_values)
        self.register_buffer("edges", _cell_edges(values, num_values))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """Per-column scales from training data ``x [N, d]`` (scaled units)."""
        if x.shape[0] > 1:
            self.scale.copy_(x.double().std(0).clamp_min(1e-6).to(self.scale))

    # ----------------------------------------------------------------- maps
    def forward(self, x: Tensor, generator: torch.Generator | None = None, dequantize: bool = True) -> Tensor:
        """Data → unconstrained values. ``dequantize``: spread discrete values over their cells and
        point masses over their regions at random (training); otherwise use fixed points inside
        them (encoding a given point)."""
        if not self.active:
            return x
        u = x
        noise = (
            torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) if dequantize else torch.full_like(x, 0.5)
        )
        discrete = self.num_values > 0
        if bool(discrete.any()):
            u = torch.where(discrete, self._dequantize(x, noise), u)
        width = _ATOM * self.scale.to(x)
        u = torch.where(x <= self.atom_lower, self.atom_lower - width * noise, u)
        u = torch.where(x >= self.atom_upper, self.atom_upper + width * noise, u)
        smooth = torch.isfinite(self.lower) | torch.isfinite(self.upper)
        if bool(smooth.any()):
            u = torch.where(smooth & ~discrete, self._unbound(u), u)
        return u

    def inverse(self, u: Tensor) -> Tensor:
        """Unconstrained values → data inside the support."""
        if not self.active:
            return u
        discrete = self.num_values > 0
        x = u
        smooth = torch.isfinite(self.lower) | torch.isfinite(self.upper)
        if bool(smooth.any()):
            x = torch.where(smooth & ~discrete, self._bound(u), x)
        x = torch.maximum(torch.minimum(x, self.atom_upper.to(x)), self.atom_lower.to(x))
        if bool(discrete.any()):
            x = torch.where(discrete, self._quantize(u), x)
        return x

    def rounding_choices(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For unconstrained values ``u [N, d]``: the data ``x = inverse(u)``, the other value a
        discrete column could round to (the allowed value on the other side of u; x itself where
        there is none, at the ends of the support and in other columns) and how much farther
        from u it is (+inf where there is no other value): ``(x, other, extra)``, each
        ``[N, d]`` in scaled units."""
        x = self.inverse(u)
        extra = torch.full_like(u, _INF)
        discrete = self.num_values > 1
        if not bool(discrete.any()):
            return x, x, extra
        index = self._cell_index(u)
        step = torch.where(u >= x, 1, -1)
        other_index = (index + step).clamp(min=0)
        other_index = torch.minimum(other_index, (self.num_values - 1).clamp_min(0).expand_as(other_index))
        values = self.values.to(u).expand(u.shape[0], -1, -1)
        other = values.gather(2, other_index.unsqueeze(-1)).squeeze(-1)
        has_other = discrete & (other_index != index)
        extra = torch.where(has_other, (u - other).abs() - (u - x).abs(), extra)
        return x, torch.where(has_other, other, x), extra

    # ----------------------------------------------------------------- pieces
    def _dequantize(self, x: Tensor, noise: Tensor) -> Tensor:
        index = self._nearest_value(x)
        low = self.edges.to(x).expand(x.shape[0], -1, -1).gather(2, index.unsqueeze(-1)).squeeze(-1)
        high = self.edges.to(x).expand(x.shape[0], -1, -1).gather(2, (index + 1).unsqueeze(-1)).squeeze(-1)
        return low + (high - low) * noise

    def _nearest_value(self, x: Tensor) -> Tensor:
        valid = torch.arange(self.values.shape[1], device=x.device) < self.num_values.unsqueeze(1)
        gap = (x.unsqueeze(-1) - self.values.to(x)).abs().masked_fill(~valid, _INF)
        return gap.argmin(-1)

    def _cell_index(self, u: Tensor) -> Tensor:
        """Index ``[N, d]`` of the value whose cell each of ``u [N, d]`` falls in (discrete columns)."""
        # interior edges of each column's cells; padding edges are +inf so they are never passed
        inner = self.edges[:, 1:-1].to(u)
        return (u.unsqueeze(-1) > inner).sum(-1).clamp_max((self.num_values - 1).clamp_min(0))

    def _quantize(self, u: Tensor) -> Tensor:
        index = self._cell_index(u)
        return self.values.to(u).expand(u.shape[0], -1, -1).gather(2, index.unsqueeze(-1)).squeeze(-1)

    def _bound(self, u: Tensor) -> Tensor:
        lower, upper, s = self.lower.to(u), self.upper.to(u), _SMOOTH * self.scale.to(u)
        both = torch.isfinite(lower) & torch.isfinite(upper)
        span = torch.where(both, upper - lower, torch.ones_like(u[0]))
        mid = torch.where(both, (lower + upper) / 2, torch.zeros_like(u[0]))
        two_sided = lower + span * torch.sigmoid(4 * (u - mid) / span)
        from_lower = lower + s * nn.functional.softplus((u - lower) / s)
        from_upper = upper - s * nn.functional.softplus((upper - u) / s)
        return torch.where(both, two_sided, torch.where(torch.isfinite(lower), from_lower, from_upper))

    def _unbound(self, x: Tensor) -> Tensor:
        lower, upper, s = self.lower.to(x), self.upper.to(x), _SMOOTH * self.scale.to(x)
        both = torch.isfinite(lower) & torch.isfinite(upper)
        span = torch.where(both, upper - lower, torch.ones_like(x[0]))
        mid = torch.where(both, (lower + upper) / 2, torch.zeros_like(x[0]))
        tiny = 1e-6 * span
        p = ((x - lower) / span).clamp(tiny / span, 1 - tiny / span)
        two_sided = mid + span / 4 * torch.log(p / (1 - p))
        above = ((x - lower) / s).clamp_min(1e-6)
        below = ((upper - x) / s).clamp_min(1e-6)
        from_lower = lower + s * _softplus_inverse(above)
        from_upper = upper - s * _softplus_inverse(below)
        return torch.where(both, two_sided, torch.where(torch.isfinite(lower), from_lower, from_upper))


def _softplus_inverse(y: Tensor) -> Tensor:
    """log(exp(y) − 1), stable for large y."""
    return y + torch.log(-torch.expm1(-y))


def _cell_edges(values: Tensor, num_values: Tensor) -> Tensor:
    """Cell edges ``[d, m + 1]`` around each column's sorted values: midpoints between neighbours,
    and outer edges half a neighbouring gap beyond the ends (a single value: a cell of width
    ``_SINGLE_CELL``); +inf past a column's values."""
    d, m = values.shape
    edges = torch.full((d, m + 1), _INF)
    for j in range(d):
        k = int(num_values[j])
        if k == 0:
            continue
        v = values[j, :k]
        if k == 1:  # a column that never varies: a narrow cell, so it stays the flattest direction of the data
            edges[j, :2] = torch.stack([v[0] - _SINGLE_CELL / 2, v[0] + _SINGLE_CELL / 2])
            continue
        mids = (v[1:] + v[:-1]) / 2
        edges[j, 0] = v[0] - (v[1] - v[0]) / 2
        edges[j, 1:k] = mids
        edges[j, k] = v[-1] + (v[-1] - v[-2]) / 2
    return edges
