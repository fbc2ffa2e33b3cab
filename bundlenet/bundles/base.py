"""The bundle abstraction: a many-to-one map π: E → B that can be sampled.

A :class:`Bundle` knows how to draw points of the total space (with their base points),
how to draw points of the fiber π⁻¹(y) over given base points, and how to project. Synthetic
bundles implement all three exactly; the evaluation uses ``sample_fiber`` as ground truth.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from bundlenet.errors import InputError
from bundlenet.geometry import nearest_neighbour_distance

if TYPE_CHECKING:
    import pandas as pd

Units = Literal["original", "scaled"]

DENSE_FIBER_POINTS = 4000  # points of the dense fiber sample behind the default distance_to_fiber


def check_units(units: str) -> str:
    """Return ``units`` if it is ``original`` or ``scaled``, else raise a one-line :class:`InputError`."""
    if units not in ("original", "scaled"):
        raise InputError(f"units must be original or scaled, got {units!r}")
    return units


@dataclass(frozen=True)
class BundleSamples:
    """Points of the total space and their base points.

    Attributes:
        total: ``[N, d_E]`` points x of the total space E.
        base: ``[N, d_B]`` base points y = π(x).
    """

    total: Tensor
    base: Tensor


@dataclass(frozen=True)
class ColumnSupport:
    """Where the values of one total-space column can lie, in original units.

    Attributes:
        lower, upper: bounds (``None``: unbounded on that side). Samples never leave them.
        values: the allowed values of a discrete column (few distinct values in the data, or
            stated by the user), sorted; ``None`` for a continuous column.
        atoms: bound values that carry a point mass (e.g. the exact zeros of an ingredient that
            is often absent): samples equal them exactly with the data's frequency.
    """

    lower: float | None = None
    upper: float | None = None
    values: tuple[float, ...] | None = None
    atoms: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.lower is not None and self.upper is not None and not self.lower < self.upper:
            raise InputError(f"a column's lower bound {self.lower} must be below its upper bound {self.upper}")

    @property
    def is_trivial(self) -> bool:
        return self.lower is None and self.upper is None and self.values is None and not self.atoms

    def contains(self, x: Tensor, tolerance: float = 1e-6) -> Tensor:
        """Whether each value of ``x [...]`` lies in the support (bounds, and allowed values)."""
        inside = torch.isfinite(x)
        scale = tolerance * max([1.0, *(abs(v) for v in (self.lower, self.upper) if v is not None)])
        if self.lower is not None:
            inside = inside & (x >= self.lower - scale)
        if self.upper is not None:
            inside = inside & (x <= self.upper + scale)
        if self.values is not None:
            allowed = torch.tensor(self.values, dtype=x.dtype, device=x.device)
            gap = tolerance * max(1.0, float(allowed.abs().max()))
            inside = inside & ((x.unsqueeze(-1) - allowed).abs().min(dim=-1).values <= gap)
        return inside

    def to_dict(self) -> dict[str, Any]:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "values": None if self.values is None else [float(v) for v in self.values],
            "atoms": [float(v) for v in self.atoms],
        }

    @classmethod
    def coerce(cls, d: ColumnSupport | dict[str, Any]) -> ColumnSupport:
        if isinstance(d, ColumnSupport):
            return d
        values = d.get("values")
        return cls(
            None if d.get("lower") is None else float(d["lower"]),
            None if d.get("upper") is None else float(d["upper"]),
            None if values is None else tuple(float(v) for v in values),
            tuple(float(v) for v in d.get("atoms") or ()),
        )


def snap_to_support(samples: torch.Tensor, supports: tuple[ColumnSupport, ...] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``[N, d_E]`` (original units, float64) with each discrete column's values and each
    point mass set to the exact value of the data (the float32 round trip through the scaling
    gives 90.00001 for 90), and the mask ``[N, d_E]`` of the cells that now hold such a value."""
    x = samples.double().clone()
    exact = torch.zeros_like(x, dtype=torch.bool)
    for j, support in enumerate(supports or ()):
        if support.values:
            allowed = torch.tensor(support.values, dtype=torch.float64)
            x[:, j] = allowed[(x[:, j, None] - allowed).abs().argmin(dim=1)]
            exact[:, j] = True
        for atom in support.atoms:
            span = max([1.0, *(abs(v) for v in (support.lower, support.upper) if v is not None)])
            hit = (x[:, j] - atom).abs() <= 1e-5 * span
            x[hit, j] = atom
            exact[:, j] |= hit
    return x, exact


@dataclass(frozen=True)
class BundleSpec:
    """What a model must know of its data, stored in every checkpoint.

    The model works in *scaled* units; users give and get *original* units (those of the data
    file). Per column, ``scaled = (original − offset) / scale``. Offsets and scales are ``None``
    for the identity (synthetic data, checkpoints written before scaling existed).

    Attributes:
        base_names: names of the base coordinates (output columns), ``d_B`` of them.
        total_names: names of the total-space coordinates (input columns), ``d_E`` of them.
        fiber_circles: number of circle factors expected in a fiber (default of
            ``model.num_circles``).
        base_offset, base_scale: ``d_B`` numbers each, or ``None``.
        total_offset, total_scale: ``d_E`` numbers each, or ``None``.
        fiber_span: how many directions a fiber spreads in (a circle: 2, a segment: 1, a
            sphere: 3); ``None``: unknown. The other directions of the total space are normal
            to the fiber.
        total_support: one :class:`ColumnSupport` per total column, or ``None`` (unbounded,
            continuous columns: the synthetic bundles).
        source: the kind of bundle the data came from (a synthetic bundle's class name), or
            ``None`` (tables, which their names and scalings identify).
        image_shape: ``(height, width)`` when the total columns are the pixels of an image, row
            by row (the sample CLI then writes image grids); ``None`` otherwise.
    """

    base_names: tuple[str, ...]
    total_names: tuple[str, ...]
    fiber_circles: int = 0
    base_offset: tuple[float, ...] | None = None
    base_scale: tuple[float, ...] | None = None
    total_offset: tuple[float, ...] | None = None
    total_scale: tuple[float, ...] | None = None
    fiber_span: int | None = None
    total_support: tuple[ColumnSupport, ...] | None = None
    source: str | None = None
    image_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.image_shape is not None and self.image_shape[0] * self.image_shape[1] != self.total_dim:
            raise InputError(f"spec image_shape {tuple(self.image_shape)} does not hold the {self.total_dim} total columns")
        if self.total_support is not None and len(self.total_support) != self.total_dim:
            raise InputError(f"spec total_support has {len(self.total_support)} columns for {self.total_dim} total columns")
        for part, dim in (("base", self.base_dim), ("total", self.total_dim)):
            for kind in ("offset", "scale"):
                values = getattr(self, f"{part}_{kind}")
                if values is not None and len(values) != dim:
                    raise InputError(f"spec {part}_{kind} has {len(values)} values for {dim} {part} columns")
            scale = getattr(self, f"{part}_scale")
            if scale is not None and not all(math.isfinite(v) and v > 0 for v in scale):
                raise InputError(f"spec {part}_scale must be finite and positive, got {list(scale)}")

    @property
    def base_dim(self) -> int:
        return len(self.base_names)

    @property
    def total_dim(self) -> int:
        return len(self.total_names)

    def to_scaled(self, points: Tensor, part: Literal["base", "total"]) -> Tensor:
        """Original → scaled units: ``(x − offset) / scale`` per column of ``points [..., d]``."""
        affine = self._affine(part, points)
        if affine is None:
            return points
        offset, scale = affine
        return (points - offset) / scale

    def to_original(self, points: Tensor, part: Literal["base", "total"]) -> Tensor:
        """Scaled → original units: ``x · scale + offset`` per column of ``points [..., d]``."""
        affine = self._affine(part, points)
        if affine is None:
            return points
        offset, scale = affine
        return points * scale + offset

    def _affine(self, part: str, like: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(offset, scale)`` of ``part`` as tensors like ``like``, or ``None`` for the identity."""
        offset, scale = getattr(self, f"{part}_offset"), getattr(self, f"{part}_scale")
        if offset is None and scale is None:
            return None
        dim = self.base_dim if part == "base" else self.total_dim
        off = torch.tensor(offset if offset is not None else [0.0] * dim, dtype=like.dtype, device=like.device)
        sc = torch.tensor(scale if scale is not None else [1.0] * dim, dtype=like.dtype, device=like.device)
        return off, sc

    def support_share(self, total: Tensor) -> Tensor | None:
        """Share of the points ``total [..., n, d_E]`` (original units) whose every column lies in
        its :class:`ColumnSupport`: ``[...]``; ``None`` when the spec has no supports."""
        if self.total_support is None:
            return None
        inside = torch.ones(total.shape[:-1], dtype=torch.bool, device=total.device)
        for j, support in enumerate(self.total_support):
            if not support.is_trivial:
                inside = inside & support.contains(total[..., j])
        return inside.double().mean(-1)

    def same_columns(self, other: BundleSpec) -> bool:
        """Whether ``other`` describes the same columns in the same units (names, scalings, and
        the source where both name one; the fiber's shape and the columns' supports may differ,
        e.g. found from other rows)."""
        same_source = self.source is None or other.source is None or self.source == other.source
        return same_source and self.same_names(other) and all(_close(getattr(self, k), getattr(other, k)) for k in _SCALING_KEYS)

    def same_names(self, other: BundleSpec) -> bool:
        """Whether ``other`` names the same base and total columns, in the same order."""
        return all(_close(getattr(self, k), getattr(other, k)) for k in ("base_names", "total_names"))

    @property
    def unscaled(self) -> bool:
        """Whether scaled units are the original ones (the identity scaling of synthetic bundles)."""
        return all(getattr(self, k) is None for k in _SCALING_KEYS)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, ints, floats), safe for ``torch.load(weights_only=True)``.

        Identity scalings, an unknown fiber dimension and absent supports are left out, so specs
        of synthetic data are unchanged.
        """
        d: dict[str, Any] = {
            "base_names": list(self.base_names),
            "total_names": list(self.total_names),
            "fiber_circles": int(self.fiber_circles),
        }
        for key in _SCALING_KEYS:
            values = getattr(self, key)
            if values is not None:
                d[key] = [float(v) for v in values]
        if self.fiber_span is not None:
            d["fiber_span"] = int(self.fiber_span)
        if self.total_support is not None:
            d["total_support"] = [s.to_dict() for s in self.total_support]
        if self.source is not None:
            d["source"] = self.source
        if self.image_shape is not None:
            d["image_shape"] = [int(v) for v in self.image_shape]
        return d

    @classmethod
    def coerce(cls, spec: BundleSpec | dict[str, Any]) -> BundleSpec:
        if isinstance(spec, BundleSpec):
            return spec
        scaling = {key: tuple(float(v) for v in spec[key]) for key in _SCALING_KEYS if spec.get(key) is not None}
        support = spec.get("total_support")
        return cls(
            base_names=tuple(str(n) for n in spec["base_names"]),
            total_names=tuple(str(n) for n in spec["total_names"]),
            fiber_circles=int(spec.get("fiber_circles", 0)),
            fiber_span=None if spec.get("fiber_span") is None else int(spec["fiber_span"]),
            total_support=None if support is None else tuple(ColumnSupport.coerce(c) for c in support),
            source=None if spec.get("source") is None else str(spec["source"]),
            image_shape=None if spec.get("image_shape") is None else (int(spec["image_shape"][0]), int(spec["image_shape"][1])),
            **scaling,
        )


_SCALING_KEYS = ("base_offset", "base_scale", "total_offset", "total_scale")


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None or isinstance(a[0] if a else None, str):
        return a == b
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))


class Bundle(ABC):
    """A bundle π: E → B with named coordinates.

    Subclasses define ``base_names``, ``total_names`` and the three methods below.
    ``fiber_circles`` is the number of circle factors expected in a fiber and ``fiber_span`` the
    number of directions it spreads in (see :class:`BundleSpec`; hints for the model's fiber
    latent). ``exact_map`` says whether :meth:`project` is the true map π (tables know it only
    on their rows).
    """

    base_names: tuple[str, ...]
    total_names: tuple[str, ...]
    fiber_circles: int = 0
    fiber_span: int | None = None
    exact_map: bool = True  # whether project() is the true map π (the evaluation's re-simulation error)

    @property
    def spec(self) -> BundleSpec:
        return BundleSpec(
            tuple(self.base_names),
            tuple(self.total_names),
            self.fiber_circles,
            fiber_span=self.fiber_span,
            source=type(self).__name__,
        )

    @property
    def base_dim(self) -> int:
        return len(self.base_names)

    @property
    def total_dim(self) -> int:
        return len(self.total_names)

    @abstractmethod
    def sample_total(self, num_samples: int, generator: torch.Generator | None = None) -> BundleSamples:
        """Draw ``num_samples`` points of the total space with their base points."""

    @abstractmethod
    def sample_fiber(self, base: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw points of each fiber: ``base [B, d_B]`` → ``[B, num_samples, d_E]``."""

    @abstractmethod
    def project(self, total: Tensor) -> Tensor:
        """The bundle map π: ``[N, d_E]`` → ``[N, d_B]``."""

    def table(self, num_rows: int, seed: int = 0) -> pd.DataFrame:
        """``num_rows`` samples of the total space as a table: the total columns, then the base
        columns (what ``data=csv`` reads), e.g. ``RobotArm().table(5000).to_csv("arm.csv", index=False)``."""
        import pandas as pd

        samples = self.sample_total(int(num_rows), torch.Generator().manual_seed(int(seed)))
        values = torch.cat([samples.total, samples.base], dim=1).double().numpy()
        return pd.DataFrame(values, columns=[*self.total_names, *self.base_names])

    def check_base(self, base: Tensor) -> Tensor:
        """Return ``base`` as a float ``[B, d_B]`` tensor, or raise a one-line :class:`InputError`."""
        return check_points(base, self.base_dim, what="base point", names=self.base_names)

    def distance_to_fiber(
        self, total: Tensor, base: Tensor, generator: torch.Generator | None = None, units: Units = "original"
    ) -> Tensor:
        """Euclidean distance of points ``total [B, n, d_E]`` to the fiber over ``base [B, d_B]``: ``[B, n]``.

        Bundles whose fibers have a closed form override this with the exact distance. The
        default is the distance to the nearest of ``DENSE_FIBER_POINTS`` points of
        :meth:`sample_fiber` (for a fiber of length ℓ drawn uniformly, an error of order
        ℓ / ``DENSE_FIBER_POINTS``). ``units`` (``original`` or ``scaled``) is that of both
        arguments; bundles without a scaling (the synthetic ones) read both the same.
        """
        check_units(units)
        dense = self.sample_fiber(base, DENSE_FIBER_POINTS, generator)
        return nearest_neighbour_distance(total, dense.to(total))

    def sample_fiber_floor(self, base: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """A second true sample of each fiber, independent of :meth:`sample_fiber`'s: the noise
        floor of the fiber metrics (``[B, num_samples, d_E]``). The default draws the fiber again;
        bundles whose fibers are finite sets of held-out points draw from other points."""
        return self.sample_fiber(base, num_samples, generator)

    def fiber_scores(
        self, total: Tensor, base: Tensor, units: Units = "original", reference: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Data-specific quality scores of fibers ``total [B, n, d_E]`` drawn over ``base [B, d_B]``,
        ``[B]`` each, reported beside the fiber metrics (e.g. a classifier's accuracy on images);
        ``reference [B, m, d_E]``: true points of the same fibers, when a score compares with
        them. None by default."""
        return {}


def check_points(points: object, dim: int, what: str, names: tuple[str, ...] | list[str] = ()) -> Tensor:
    """Validate user points: shape ``[N, dim]`` (or ``[dim]``), finite values.

    Raises:
        InputError: naming the expected and given dimension, or the first non-finite row.
    """
    tensor = torch.as_tensor(points, dtype=torch.get_default_dtype()) if not isinstance(points, Tensor) else points
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 2 or tensor.shape[-1] != dim:
        cols = f" ({', '.join(names)})" if names else ""
        given = tensor.shape[-1] if tensor.dim() >= 1 else 0
        raise InputError(f"{what}s must have dimension {dim}{cols}, got dimension {given} (shape {tuple(tensor.shape)})")
    finite = torch.isfinite(tensor).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0, 0])
        raise InputError(f"{what} {row} contains NaN or inf: {tensor[row].tolist()}; give finite values")
    return tensor
