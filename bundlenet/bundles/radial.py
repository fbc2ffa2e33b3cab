"""Bundles over y ∈ [0, 1] whose fiber over y lies on the sphere of radius 1 + y: π(x) = ‖x‖ − 1."""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from bundlenet.bundles.base import Bundle, BundleSamples


class RadialBundle(Bundle):
    r"""A bundle with base y uniform on [0, 1] and the map π(x) = ‖x‖ − 1: the fiber over y lies
    on the sphere of radius 1 + y. Subclasses give :meth:`embed`, the points of the fibers over
    given base values (drawn with the fiber's own density); sampling and π follow from it."""

    base_names = ("y",)

    @abstractmethod
    def embed(self, y: Tensor, generator: torch.Generator | None) -> Tensor:
        """One point of the fiber over each of ``y [...]``: ``[..., d_E]``."""

    def sample_total(self, num_samples: int, generator: torch.Generator | None = None) -> BundleSamples:
        y = torch.rand(num_samples, generator=generator)
        return BundleSamples(self.embed(y, generator), y.unsqueeze(1))

    def sample_fiber(self, base: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        y = self.check_base(base)[:, 0]
        return self.embed(y.unsqueeze(1).expand(-1, num_samples), generator)

    def project(self, total: Tensor) -> Tensor:
        return total.norm(dim=-1, keepdim=True) - 1
