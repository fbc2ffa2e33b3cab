r"""Columns keep their support: invertible per-column maps between a table's values and the
unconstrained space a model learns in.

For column j with support :class:`~bundlenet.bundles.base.ColumnSupport` (in the model's scaled
units), a model learns the distribution of :math:`u_j` and samples :math:`x_j = T_j(u_j)`:

* **discrete** values :math:`v_1 < \dots < v_m`: each value owns the cell between the midpoints
  to its neighbours; training data are *dequantized* (:math:`u` uniform in the cell of its value)
  and :math:`T` returns the value of the cell :math:`u` falls in, so samples take allowed values
  only, with the learned probability of each cell (:class:`Dequantization`).
* **bounds** :math:`L` (lower) and/or :math:`U` (upper) without a point mass: a smooth bijection
  onto the open interval, the identity far from the bounds,

  .. math::
      T(u) = L + s\,\mathrm{softplus}\big((u - L)/s\big), \quad
      T(u) = U - s\,\mathrm{softplus}\big((U - u)/s\big), \quad
      T(u) = L + (U - L)\,\sigma\big(4(u - \tfrac{L+U}{2})/(U - L)\big),

  for a lower bound, an upper bound, or both (:math:`s` = 0.1 × the column's standard
  deviation): :class:`LowerBound`, :class:`UpperBound` and :class:`Interval`, each a
  :class:`torch.distributions.transforms.Transform` with its ``log_abs_det_jacobian``.
* **point masses** at a bound (e.g. exact zeros): the bound is *censoring*, :math:`T(u) =
  \max(u, L)`; training rows at the bound are spread over :math:`[L - w, L)` (:math:`w` = 0.5 ×
  the column's standard deviation), so the learned mass below :math:`L` is the probability of
  the point mass, and samples equal :math:`L` exactly with that probability
  (:class:`Censoring`).

Shapes: ``forward(x [N, d]) → u [N, d]``, ``inverse(u [N, d]) → x [N, d]``. The per-column scales
are buffers fitted on the training data (:meth:`SupportTransform.fit`), so a checkpoint samples
inside the support on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from bundlenet.bundles.base import BundleSpec

_SMOOTH = 0.1  # softplus/sigmoid scale, × the column's standard deviation
_ATOM = 0.5  # width of the region a point mass is spread over, × the column's standard deviation
_INF = float("inf")
_SINGLE_CELL = 0.04  # width of the cell of a column's only value (scaled units)
_CLIP = 1e-6  # the bound maps' inverses clip this close to a bound (relative), so u stays finite


# ----------------------------------------------------------------- smooth bounds: bijections
class _BoundMap(Transform):
    """What the smooth bound maps share: increasing elementwise bijections from all of ℝ.

    ``log_abs_det_jacobian(x, y)`` takes torch's names: ``x`` is the unconstrained input (u in
    the formulas), ``y`` its image.
    """

    domain = constraints.real
    bijective = True
    sign = +1


class LowerBound(_BoundMap):
    r"""A lower bound :math:`L` as a smooth bijection :math:`\mathbb{R} \to (L, \infty)`, the
    identity far above :math:`L`:

    .. math::
        x = L + s\,\mathrm{softplus}\big((u - L)/s\big), \qquad
        \log\Big|\frac{dx}{du}\Big| = \log\sigma\big((u - L)/s\big)
        = -\mathrm{softplus}\big(-(u - L)/s\big).

    Inverse: :math:`u = L + s\,\mathrm{softplus}^{-1}\big(\max((x - L)/s,\ 10^{-6})\big)` with
    :math:`\mathrm{softplus}^{-1}(y) = y + \log(-\mathrm{expm1}(-y))`; the clip keeps points within
    :math:`10^{-6} s` of the bound (or below it) finite.

    Shapes: ``lower`` and ``scale`` (:math:`s > 0`) broadcast against ``u``, ``x`` ``[..., d]``
    (one per column: ``[d]``); elementwise, so ``log_abs_det_jacobian`` is ``[..., d]``.
    """

    def __init__(self, lower: Tensor, scale: Tensor) -> None:
        super().__init__()
        self.lower, self.scale = lower, scale

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def codomain(self) -> constraints.Constraint:
        return constraints.greater_than(self.lower)

    def _call(self, u: Tensor) -> Tensor:
        return self.lower + self.scale * nn.functional.softplus((u - self.lower) / self.scale)

    def _inverse(self, x: Tensor) -> Tensor:
        above = ((x - self.lower) / self.scale).clamp_min(_CLIP)
        return self.lower + self.scale * _softplus_inverse(above)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return -nn.functional.softplus(-(x - self.lower) / self.scale)


class UpperBound(_BoundMap):
    r"""An upper bound :math:`U` as a smooth bijection :math:`\mathbb{R} \to (-\infty, U)`, the
    identity far below :math:`U` (:class:`LowerBound` mirrored):

    .. math::
        x = U - s\,\mathrm{softplus}\big((U - u)/s\big), \qquad
        \log\Big|\frac{dx}{du}\Big| = \log\sigma\big((U - u)/s\big)
        = -\mathrm{softplus}\big(-(U - u)/s\big).

    Inverse: :math:`u = U - s\,\mathrm{softplus}^{-1}\big(\max((U - x)/s,\ 10^{-6})\big)`.

    Shapes: ``upper`` and ``scale`` (:math:`s > 0`) broadcast against ``u``, ``x`` ``[..., d]``;
    elementwise, so ``log_abs_det_jacobian`` is ``[..., d]``.
    """

    def __init__(self, upper: Tensor, scale: Tensor) -> None:
        super().__init__()
        self.upper, self.scale = upper, scale

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def codomain(self) -> constraints.Constraint:
        return constraints.less_than(self.upper)

    def _call(self, u: Tensor) -> Tensor:
        return self.upper - self.scale * nn.functional.softplus((self.upper - u) / self.scale)

    def _inverse(self, x: Tensor) -> Tensor:
        below = ((self.upper - x) / self.scale).clamp_min(_CLIP)
        return self.upper - self.scale * _softplus_inverse(below)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return -nn.functional.softplus(-(self.upper - x) / self.scale)


class Interval(_BoundMap):
    r"""Two bounds :math:`L < U` as a smooth bijection :math:`\mathbb{R} \to (L, U)`, a scaled
    sigmoid of slope 1 at the midpoint :math:`m = (L + U)/2`:

    .. math::
        x = L + (U - L)\,\sigma(z), \quad z = \frac{4(u - m)}{U - L}, \qquad
        \log\Big|\frac{dx}{du}\Big| = \log 4 + \log\sigma(z) + \log\sigma(-z)
        = \log 4 - \mathrm{softplus}(-z) - \mathrm{softplus}(z).

    Inverse: :math:`u = m + \frac{U - L}{4}\log\frac{p}{1 - p}` with :math:`p = (x - L)/(U - L)`
    clipped to :math:`[10^{-6}, 1 - 10^{-6}]`.

    Shapes: ``lower`` and ``upper`` broadcast against ``u``, ``x`` ``[..., d]``; elementwise, so
    ``log_abs_det_jacobian`` is ``[..., d]``.
    """

    def __init__(self, lower: Tensor, upper: Tensor) -> None:
        super().__init__()
        self.lower, self.upper = lower, upper

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def codomain(self) -> constraints.Constraint:
        return constraints.interval(self.lower, self.upper)

    def _call(self, u: Tensor) -> Tensor:
        span, mid = self.upper - self.lower, (self.lower + self.upper) / 2
        return self.lower + span * torch.sigmoid(4 * (u - mid) / span)

    def _inverse(self, x: Tensor) -> Tensor:
        span, mid = self.upper - self.lower, (self.lower + self.upper) / 2
        tiny = _CLIP * span
        p = ((x - self.lower) / span).clamp(tiny / span, 1 - tiny / span)
        return mid + span / 4 * torch.log(p / (1 - p))

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        span, mid = self.upper - self.lower, (self.lower + self.upper) / 2
        z = 4 * (x - mid) / span
        return math.log(4.0) - nn.functional.softplus(-z) - nn.functional.softplus(z)


def _softplus_inverse(y: Tensor) -> Tensor:
    """log(exp(y) − 1), stable for large y."""
    return y + torch.log(-torch.expm1(-y))


# ----------------------------------------------------------------- discrete values and point masses
@dataclass(frozen=True)
class Dequantization:
    r"""Discrete columns as cells: not a bijection, a dequantization and its rounding.

    Column j's sorted allowed values :math:`v_1 < \dots < v_k` own the cells
    :math:`[e_{i-1}, e_i)` between the midpoints to their neighbours (:meth:`cell_edges`).

    * :meth:`spread`: :math:`u = e_{i-1} + (e_i - e_{i-1})\,\varepsilon` for the value
      :math:`v_i` nearest :math:`x` and :math:`\varepsilon \in [0, 1]` (uniform noise in training,
      ½ for a cell's centre), so training data cover each cell uniformly.
    * :meth:`quantize`: :math:`T(u) = v_i` for the cell :math:`u` falls in (below the first cell:
      :math:`v_1`, above the last: :math:`v_k`), so samples take allowed values only.

    Shapes: ``values [d, m]`` (a column's values first, padding past ``num_values [d]``; 0 values:
    a continuous column), ``edges [d, m + 1]`` (+inf past a column's values); ``x``, ``u``,
    ``noise`` and indices ``[N, d]``.
    """

    values: Tensor
    edges: Tensor
    num_values: Tensor

    @staticmethod
    def cell_edges(values: Tensor, num_values: Tensor) -> Tensor:
        """Cell edges ``[d, m + 1]`` around each column's sorted values: midpoints between
        neighbours, and outer edges half a neighbouring gap beyond the ends (a single value: a
        cell of width ``_SINGLE_CELL``); +inf past a column's values."""
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

    def spread(self, x: Tensor, noise: Tensor) -> Tensor:
        """Each of ``x`` to the point at ``noise`` in the cell of its nearest allowed value."""
        index = self.nearest(x)
        low, high = _pick(self.edges.to(x), index), _pick(self.edges.to(x), index + 1)
        return low + (high - low) * noise

    def nearest(self, x: Tensor) -> Tensor:
        """Index of the allowed value nearest each of ``x``."""
        valid = torch.arange(self.values.shape[1], device=x.device) < self.num_values.unsqueeze(1)
        gap = (x.unsqueeze(-1) - self.values.to(x)).abs().masked_fill(~valid, _INF)
        return gap.argmin(-1)

    def cell(self, u: Tensor) -> Tensor:
        """Index of the value whose cell each of ``u`` falls in."""
        # interior edges of each column's cells; padding edges are +inf so they are never passed
        inner = self.edges[:, 1:-1].to(u)
        return (u.unsqueeze(-1) > inner).sum(-1).clamp_max(self.last())

    def last(self) -> Tensor:
        """Index of each column's last value ``[d]`` (0 for a continuous column)."""
        return (self.num_values - 1).clamp_min(0)

    def value(self, index: Tensor, like: Tensor) -> Tensor:
        """The allowed values at ``index`` in the dtype of ``like``."""
        return _pick(self.values.to(like), index)

    def quantize(self, u: Tensor) -> Tensor:
        """The allowed value of the cell each of ``u`` falls in."""
        return self.value(self.cell(u), u)


def _pick(table: Tensor, index: Tensor) -> Tensor:
    """``table [d, k]`` at ``index [N, d]`` of each column: ``[N, d]``."""
    return table.expand(index.shape[0], -1, -1).gather(2, index.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class Censoring:
    r"""Point masses at bounds as censoring: not a bijection, a spread and a clamp.

    * :meth:`spread` (data → u): :math:`u = L - w\,\varepsilon` where :math:`x \le L`,
      :math:`u = U + w\,\varepsilon` where :math:`x \ge U`, :math:`u = x` elsewhere
      (:math:`\varepsilon \in [0, 1]`: uniform noise in training, ½ to encode a point), so the
      mass of u beyond a bound is the probability of its point mass.
    * :meth:`censor` (u → data): :math:`T(u) = \min(\max(u, L), U)`, so samples equal a bound
      exactly with that probability.

    Shapes: ``lower``, ``upper``, ``width`` :math:`w` ``[d]`` (:math:`\mp\infty`: no point mass
    there); ``x``, ``u``, ``noise`` ``[N, d]``.
    """

    lower: Tensor
    upper: Tensor
    width: Tensor

    def spread(self, x: Tensor, noise: Tensor) -> Tensor:
        """Each of ``x`` at a point mass to the point at ``noise`` of its region; the others kept."""
        u = torch.where(x <= self.lower, self.lower - self.width * noise, x)
        return torch.where(x >= self.upper, self.upper + self.width * noise, u)

    def censor(self, u: Tensor) -> Tensor:
        """Each of ``u`` beyond a point mass's bound to the bound."""
        return torch.maximum(torch.minimum(u, self.upper), self.lower)


# ----------------------------------------------------------------- the columns of a table
class SupportTransform(nn.Module):
    """The per-column maps of the module docstring for the total columns of ``spec`` (scaled units).

    Columns without a support are passed through unchanged; a spec without supports gives the
    identity (``active`` is False). The buffers hold each column's parameters; every call builds
    the maps (:class:`LowerBound`, :class:`UpperBound`, :class:`Interval`, :class:`Censoring`,
    :class:`Dequantization`) from them in the dtype of its input and routes each column through
    its own.
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
        self.register_buffer("edges", Dequantization.cell_edges(values, num_values))

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
        noise = (
            torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) if dequantize else torch.full_like(x, 0.5)
        )
        u = self.censoring(x).spread(x, noise)
        discrete = self.num_values > 0
        if bool(discrete.any()):
            u = torch.where(discrete, self.dequantization().spread(x, noise), u)
        smooth = self.smooth()
        if bool(smooth.any()):
            u = torch.where(smooth, self._unbound(u), u)
        return u

    def inverse(self, u: Tensor) -> Tensor:
        """Unconstrained values → data inside the support."""
        if not self.active:
            return u
        x = u
        smooth = self.smooth()
        if bool(smooth.any()):
            x = torch.where(smooth, self._bound(u), x)
        x = self.censoring(x).censor(x)
        discrete = self.num_values > 0
        if bool(discrete.any()):
            x = torch.where(discrete, self.dequantization().quantize(u), x)
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
        cells = self.dequantization()
        index = cells.cell(u)
        step = torch.where(u >= x, 1, -1)
        other_index = (index + step).clamp(min=0)
        other_index = torch.minimum(other_index, cells.last().expand_as(other_index))
        other = cells.value(other_index, u)
        has_other = discrete & (other_index != index)
        extra = torch.where(has_other, (u - other).abs() - (u - x).abs(), extra)
        return x, torch.where(has_other, other, x), extra

    # ----------------------------------------------------------------- the maps of each column
    def smooth(self) -> Tensor:
        """Which columns ``[d]`` have a smooth bound (:class:`LowerBound`, :class:`UpperBound` or
        :class:`Interval`)."""
        return (torch.isfinite(self.lower) | torch.isfinite(self.upper)) & (self.num_values == 0)

    def bounds(self, like: Tensor) -> tuple[Tensor, Tensor, tuple[LowerBound, UpperBound, Interval]]:
        """The smooth bound maps in the dtype of ``like``, with the columns ``[d]`` that have both
        bounds (:class:`Interval`) and those that have a lower one: ``(both, has_lower, (lower,
        upper, interval))``. Each map carries neutral parameters in the columns it does not
        serve, so that it stays finite there."""
        lower, upper, s = self.lower.to(like), self.upper.to(like), _SMOOTH * self.scale.to(like)
        has_lower, has_upper = torch.isfinite(lower), torch.isfinite(upper)
        both = has_lower & has_upper
        maps = (
            LowerBound(torch.where(has_lower, lower, 0.0), s),
            UpperBound(torch.where(has_upper, upper, 0.0), s),
            Interval(torch.where(both, lower, 0.0), torch.where(both, upper, 1.0)),
        )
        return both, has_lower, maps

    def censoring(self, like: Tensor) -> Censoring:
        """The columns' point masses in the dtype of ``like``."""
        return Censoring(self.atom_lower.to(like), self.atom_upper.to(like), _ATOM * self.scale.to(like))

    def dequantization(self) -> Dequantization:
        """The discrete columns' values and cells."""
        return Dequantization(self.values, self.edges, self.num_values)

    def _bound(self, u: Tensor) -> Tensor:
        both, has_lower, (from_lower, from_upper, interval) = self.bounds(u)
        return torch.where(both, interval(u), torch.where(has_lower, from_lower(u), from_upper(u)))

    def _unbound(self, x: Tensor) -> Tensor:
        both, has_lower, (from_lower, from_upper, interval) = self.bounds(x)
        return torch.where(both, interval.inv(x), torch.where(has_lower, from_lower.inv(x), from_upper.inv(x)))
