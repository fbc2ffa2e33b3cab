"""The bundle abstraction: a many-to-one map π: E → B that can be sampled.

A :class:`Bundle` knows how to draw points of the total space (with their base points),
how to draw points of the fiber π⁻¹(y) over given base points, and how to project. Synthetic
bundles implement all three exactly; the evaluation uses ``sample_fiber`` as ground truth.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from bundlenet.errors import InputError


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

    Attributes:
        base_names: names of the base coordinates (output columns), ``d_B`` of them.
        total_names: names of the total-space coordinates (input columns), ``d_E`` of them.
        fiber_circles: number of circle factors expected in a fiber (default of
            ``model.num_circles``).
    """

    base_names: tuple[str, ...]
    total_names: tuple[str, ...]
    fiber_circles: int = 0

    @property
    def base_dim(self) -> int:
        return len(self.base_names)

    @property
    def total_dim(self) -> int:
        return len(self.total_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, ints), safe for ``torch.load(weights_only=True)``."""
        d = asdict(self)
        return {"base_names": list(d["base_names"]), "total_names": list(d["total_names"]), "fiber_circles": int(d["fiber_circles"])}

    @classmethod
    def coerce(cls, spec: BundleSpec | dict[str, Any]) -> BundleSpec:
        if isinstance(spec, BundleSpec):
            return spec
        return cls(
            base_names=tuple(str(n) for n in spec["base_names"]),
            total_names=tuple(str(n) for n in spec["total_names"]),
            fiber_circles=int(spec.get("fiber_circles", 0)),
        )


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
