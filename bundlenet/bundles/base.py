"""The bundle abstraction: a many-to-one map π: E → B that can be sampled.

A :class:`Bundle` knows how to draw points of the total space (with their base points),
how to draw points of the fiber π⁻¹(y) over given base points, and how to project. Synthetic
bundles implement all three exactly; the evaluation uses ``sample_fiber`` as ground truth.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from bundlenet.errors import InputError

Units = Literal["original", "scaled"]


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
    """

    base_names: tuple[str, ...]
    total_names: tuple[str, ...]
    fiber_circles: int = 0
    base_offset: tuple[float, ...] | None = None
    base_scale: tuple[float, ...] | None = None
    total_offset: tuple[float, ...] | None = None
    total_scale: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
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
        offset, scale = self._affine(part, points)
        return points if offset is None else (points - offset) / scale

    def to_original(self, points: Tensor, part: Literal["base", "total"]) -> Tensor:
        """Scaled → original units: ``x · scale + offset`` per column of ``points [..., d]``."""
        offset, scale = self._affine(part, points)
        return points if offset is None else points * scale + offset

    def _affine(self, part: str, like: Tensor) -> tuple[Tensor | None, Tensor | None]:
        offset, scale = getattr(self, f"{part}_offset"), getattr(self, f"{part}_scale")
        if offset is None and scale is None:
            return None, None
        dim = self.base_dim if part == "base" else self.total_dim
        off = torch.tensor(offset if offset is not None else [0.0] * dim, dtype=like.dtype, device=like.device)
        sc = torch.tensor(scale if scale is not None else [1.0] * dim, dtype=like.dtype, device=like.device)
        return off, sc

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, ints, floats), safe for ``torch.load(weights_only=True)``.

        Identity scalings are left out, so specs of synthetic data are unchanged.
        """
        d: dict[str, Any] = {"base_names": list(self.base_names), "total_names": list(self.total_names), "fiber_circles": int(self.fiber_circles)}
        for key in _SCALING_KEYS:
            values = getattr(self, key)
            if values is not None:
                d[key] = [float(v) for v in values]
        return d

    @classmethod
    def coerce(cls, spec: BundleSpec | dict[str, Any]) -> BundleSpec:
        if isinstance(spec, BundleSpec):
            return spec
        scaling = {key: tuple(float(v) for v in spec[key]) for key in _SCALING_KEYS if spec.get(key) is not None}
        return cls(
            base_names=tuple(str(n) for n in spec["base_names"]),
            total_names=tuple(str(n) for n in spec["total_names"]),
            fiber_circles=int(spec.get("fiber_circles", 0)),
            **scaling,
        )


_SCALING_KEYS = ("base_offset", "base_scale", "total_offset", "total_scale")


class Bundle(ABC):
    """A bundle π: E → B with named coordinates.

    Subclasses define ``base_names``, ``total_names`` and the three methods below.
    ``fiber_circles`` is the number of circle factors expected in a fiber (a hint for the
    model's fiber latent, ``model.num_circles``).
    """

    base_names: tuple[str, ...]
    total_names: tuple[str, ...]
    fiber_circles: int = 0

    @property
    def spec(self) -> BundleSpec:
        return BundleSpec(tuple(self.base_names), tuple(self.total_names), self.fiber_circles)

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
    def sample_fiber(
        self, base: Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw points of each fiber: ``base [B, d_B]`` → ``[B, num_samples, d_E]``."""

    @abstractmethod
    def project(self, total: Tensor) -> Tensor:
        """The bundle map π: ``[N, d_E]`` → ``[N, d_B]``."""

    def check_base(self, base: Tensor) -> Tensor:
        """Return ``base`` as a float ``[B, d_B]`` tensor, or raise a one-line :class:`InputError`."""
        return check_points(base, self.base_dim, what="base point", names=self.base_names)


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
        raise InputError(
            f"{what}s must have dimension {dim}{cols}, got dimension {given} (shape {tuple(tensor.shape)})"
        )
    finite = torch.isfinite(tensor).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0, 0])
        raise InputError(f"{what} {row} contains NaN or inf: {tensor[row].tolist()}; give finite values")
    return tensor
