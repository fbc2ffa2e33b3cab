"""The conditional GAN baseline conditioned on the nearest cover centre and the base point."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bundlenet.errors import InputError
from bundlenet.models.baselines.gan import GANBaseline
from bundlenet.nn.cover import Cover, capped_count
from bundlenet.ranks import FirstRankLog

log = FirstRankLog(__name__)


class NeighbourhoodCGAN(GANBaseline):
    r"""Conditional GAN :math:`x = G(z, (\hat c_k, \hat y))`.

    :math:`c_k` is the centre of the neighbourhood of y in a k-means cover of the training base
    points (K = ``num_nbhds``, as BundleNet's), hats are standardised. The condition tells the
    generator both where it is and which chart of the cover it is in. ``num_nbhds=None`` takes
    the authors' 25, or every distinct base value of the training data where there are fewer
    (e.g. 10 classes).
    """

    AUTHORS_NBHDS = 25

    def __init__(self, spec: Any, num_nbhds: int | None = None, cover_seed: int = 0, **kwargs: Any) -> None:
        if num_nbhds is not None and int(num_nbhds) < 1:
            raise InputError(f"model.num_nbhds must be a positive integer or null, got {num_nbhds}")
        super().__init__(spec, **kwargs)
        self.num_nbhds = int(num_nbhds or self.AUTHORS_NBHDS)
        self.cover = Cover(self.num_nbhds, self.spec.base_dim)
        self.cover_seed = int(cover_seed)

    def fit_extra(self, total: Tensor, base: Tensor) -> None:
        if self.hparams.get("num_nbhds") is None:
            k = capped_count(base, self.AUTHORS_NBHDS)
            if k != self.num_nbhds:
                self.num_nbhds = k
                self.cover = Cover(k, self.spec.base_dim).to(base)
            self.hparams["num_nbhds"] = k  # checkpoints rebuild the same cover
        sizes = self.cover.fit(base, seed=self.cover_seed)
        log.info("cover: %d neighbourhoods, %d-%d training points each", sizes.numel(), int(sizes.min()), int(sizes.max()))

    def condition_dim(self) -> int:
        return 2 * self.spec.base_dim

    def condition(self, base: Tensor) -> Tensor:
        centre = self.cover.centres[self.cover.assign(base)]
        return torch.cat([self.base_scaler(centre), self.base_scaler(base)], dim=1)
