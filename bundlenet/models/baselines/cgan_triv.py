"""The neighbourhood-conditioned GAN trained one neighbourhood at a time, like BundleNet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from bundlenet.errors import InputError
from bundlenet.models.baselines.cgan_nbhd import NeighbourhoodCGAN
from bundlenet.nn.cover import group_by


class TrivializedCGAN(NeighbourhoodCGAN):
    r""":class:`NeighbourhoodCGAN` whose updates each see one neighbourhood U_k only.

    A training batch is grouped by neighbourhood; ``nbhds_per_step`` random neighbourhoods of it
    (the authors: 5) each give one critic/generator update on their points π⁻¹(U_k), so the
    critic compares real and generated points within a local trivialization, as in BundleNet.
    """

    def __init__(self, spec: Any, num_nbhds: int | None = None, nbhds_per_step: int = 5, **kwargs: Any) -> None:
        if int(nbhds_per_step) < 1:
            raise InputError(f"model.nbhds_per_step must be a positive integer, got {nbhds_per_step}")
        super().__init__(spec, num_nbhds=num_nbhds, **kwargs)
        self.nbhds_per_step = int(nbhds_per_step)

    def training_groups(self, total: Tensor, base: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        groups = group_by(self.cover.assign(base), self.num_nbhds)
        chosen = torch.randperm(groups.index.shape[0], device=base.device)[: self.nbhds_per_step]
        for row in chosen.tolist():  # a handful of neighbourhoods, each one vectorised update
            index = groups.index[row][groups.mask[row]]
            if index.numel() >= 2:
                yield total[index], base[index]
