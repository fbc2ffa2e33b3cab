"""The authors' BundleNet objective (Courts & Kvinge, *Bundle Networks*, ICLR 2022): ``model=bundlenet_paper``,
used by the ``experiment=paper_*`` presets."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from bundlenet.bundles.base import BundleSpec, Units
from bundlenet.errors import InputError
from bundlenet.models.base import CHUNK, BundleModel, OptimizerFactory, SchedulerFactory, Trivialized
from bundlenet.nn.cover import Cover, group_by
from bundlenet.nn.fiber_prior import FiberPrior
from bundlenet.nn.losses import DEFAULT_WEIGHTS, LossTerms, commutativity_error, fiber_losses
from bundlenet.nn.trivialization import Coupling, LocalTrivialization
from bundlenet.ranks import FirstRankLog

log = FirstRankLog(__name__)


class PaperBundleNet(BundleModel):
    r"""A Bundle Network: a cover of the base and a local trivialization on each neighbourhood.

    For a neighbourhood U_k (k-means cell of the base), φ_k: π⁻¹(U_k) → U_k × F is an invertible
    network conditioned on k (:class:`~bundlenet.nn.trivialization.LocalTrivialization`). Points are
    standardised and zero-padded to ``total_dim`` = D; ``φ_k(x) = (ŷ, z)`` with ŷ ∈ R^{d_B} the
    base and z ∈ R^{D−d_B} the fiber latent (:class:`~bundlenet.nn.fiber_prior.FiberPrior`).
    Training minimises ``w_c‖ŷ − y‖ + w_f KL(data‖gen) + w_b KL(gen‖data) + w_d dist`` where the
    generated points are ``φ_k⁻¹(y, z)`` for the real y of the batch repeated ``num_generated``
    times. Sampling a fiber over y is ``φ_k⁻¹(y, z)``, z drawn from the neighbourhood's stored
    latent statistics, k the neighbourhood of y.

    Args:
        spec: names of the base and total coordinates (a :class:`BundleSpec` or its dict).
        num_nbhds: K, the number of neighbourhoods of the cover.
        total_dim: D; ``None`` picks ``max(d_E, d_B + 2·num_circles, d_B + 1)``.
        num_circles: circle pairs in the fiber latent; ``None`` takes ``spec.fiber_circles``.
        num_blocks, hidden_features, depth, coupling, num_bins, tail_bound, conditional_affine:
            the flow (see :class:`LocalTrivialization`).
        context: how φ sees its neighbourhood: the (standardised) ``centre``, a learned
            ``embedding`` of the index, or ``both``.
        loss_weights: weights of ``commutativity``, ``kl_fwd``, ``kl_bwd``, ``distance``.
        num_generated: generated points per real point in the fiber losses (authors: 5).
        overlap: each training point trains the commutativity of the charts of its ``overlap``
            nearest centres, so neighbouring charts agree where the neighbourhoods of the
            cover meet (1 = disjoint Voronoi cells, as the authors' code).
        latent_momentum: moving-average rate of the stored latent statistics.
        cover_seed: seed of k-means.
        optimizer: ``params -> Optimizer`` (a partial); scheduler: ``(optimizer, total_steps) ->``.
    """

    def __init__(
        self,
        spec: BundleSpec | dict[str, Any],
        num_nbhds: int = 100,
        total_dim: int | None = None,
        num_circles: int | None = None,
        num_blocks: int = 4,
        hidden_features: int = 96,
        depth: int = 2,
        coupling: Coupling = "rq_spline",
        num_bins: int = 8,
        tail_bound: float = 5.0,
        conditional_affine: bool = True,
        context: Literal["centre", "embedding", "both"] = "centre",
        embedding_dim: int = 8,
        loss_weights: dict[str, float] | None = None,
        num_generated: int = 2,
        overlap: int = 2,
        latent_momentum: float = 0.1,
        cover_seed: int = 0,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(spec, optimizer, scheduler)
        d_e, d_b = self.spec.total_dim, self.spec.base_dim
        num_circles = self.spec.fiber_circles if num_circles is None else int(num_circles)
        total_dim = max(d_e, d_b + 2 * num_circles, d_b + 1) if total_dim is None else int(total_dim)
        _check_dims(d_e, d_b, total_dim, num_circles)
        _check_options(num_nbhds, overlap, context)
        weights = _loss_weights(loss_weights)
        self.save_options(loss_weights=weights)

        self.loss_weights = weights
        self.total_dim = total_dim
        self.cover = Cover(num_nbhds, d_b)
        self.prior = FiberPrior(num_nbhds, total_dim - d_b, num_circles, latent_momentum)
        self.embedding = nn.Embedding(num_nbhds, embedding_dim) if context != "centre" else None
        context_features = (d_b if context != "embedding" else 0) + (embedding_dim if context != "centre" else 0)
        self.phi = LocalTrivialization(
            total_dim,
            context_features,
            num_blocks=num_blocks,
            hidden_features=hidden_features,
            depth=depth,
            coupling=coupling,
            num_bins=num_bins,
            tail_bound=tail_bound,
            conditional_affine=conditional_affine,
        )

    # ----------------------------------------------------------------- pieces
    def fit_extra(self, total: Tensor, base: Tensor) -> None:
        sizes = self.cover.fit(base, seed=self.hparams["cover_seed"])
        log.info("cover: %d neighbourhoods, %d-%d training points each", sizes.numel(), int(sizes.min()), int(sizes.max()))

    def context(self, neighbourhood: Tensor) -> Tensor:
        """The condition of φ for each neighbourhood index ``[N]`` → ``[N, C]``."""
        parts = []
        if self.hparams["context"] != "embedding":
            parts.append(self.base_scaler(self.cover.centres)[neighbourhood])
        if self.embedding is not None:
            parts.append(self.embedding(neighbourhood))
        return torch.cat(parts, dim=1)

    def pad(self, total: Tensor) -> Tensor:
        """Standardise and zero-pad total-space points: ``[N, d_E]`` → ``[N, D]``."""
        x = self.standardize(total, dequantize=self.training)
        return nn.functional.pad(x, (0, self.total_dim - x.shape[1]))

    def encode(self, total: Tensor, neighbourhood: Tensor) -> tuple[Tensor, Tensor]:
        """φ_k(x) → (ŷ in original units ``[N, d_B]``, fiber latent ``[N, L]``)."""
        u, _ = self.phi(self.pad(total), self.context(neighbourhood))
        d_b = self.spec.base_dim
        return self.base_scaler.inverse(u[:, :d_b]), u[:, d_b:]

    def decode(self, base: Tensor, latent: Tensor, neighbourhood: Tensor) -> Tensor:
        """φ_k⁻¹(y, z) in the standardised padded space ``[N, D]``."""
        x, _ = self.phi.inverse(torch.cat([self.base_scaler(base), latent], dim=1), self.context(neighbourhood))
        return x

    # ----------------------------------------------------------------- training
    def loss_terms(self, total: Tensor, base: Tensor, update_prior: bool = False, shard: tuple[int, int] = (0, 1)) -> LossTerms:
        """The four loss terms on a batch ``total [N, d_E]``, ``base [N, d_B]``.

        ``shard = (rank, world_size)``: under DDP every rank gets the same batch, encodes all of
        it (so the latent statistics, and the prior buffers, agree on every rank) and computes
        the loss terms of its own neighbourhoods, ``k % world_size == rank``; DDP's gradient
        average then covers every neighbourhood once.
        """
        rank, world = shard
        overlap = self.hparams["overlap"]
        charts = self.cover.nearest(base, overlap)  # [N, overlap], nearest first
        nbhd = charts[:, 0]
        base_hat, latent = self.encode(total.repeat_interleave(overlap, dim=0), charts.reshape(-1))
        mine = (nbhd % world == rank).repeat_interleave(overlap)
        comm = (
            commutativity_error(base_hat[mine], base.repeat_interleave(overlap, dim=0)[mine])
            if bool(mine.any())
            else base_hat.sum() * 0
        )
        latent = latent.reshape(total.shape[0], overlap, -1)[:, 0]

        groups = group_by(nbhd, self.cover.num_nbhds)
        stats = self.prior.statistics(latent[groups.index], groups.mask)
        if update_prior:
            self.prior.update(stats, groups.neighbourhood)
        if world > 1:
            own = groups.neighbourhood % world == rank
            groups, stats = groups.select(own), stats.select(own)

        gen_groups = groups.repeat(self.hparams["num_generated"])
        row = torch.arange(groups.index.shape[0], device=nbhd.device).unsqueeze(1).expand_as(gen_groups.index)
        point = gen_groups.index[gen_groups.mask]
        gen_rows = row[gen_groups.mask]
        z = self.prior.sample(stats, gen_rows)
        generated = self.decode(base[point], z, nbhd[point])
        gen = generated.new_zeros(*gen_groups.index.shape, self.total_dim)
        gen[gen_groups.mask] = generated
        real = self.pad(total)[groups.index]
        kl_fwd, kl_bwd, dist = fiber_losses(real, groups.mask, gen, gen_groups.mask)
        return LossTerms(comm, kl_fwd, kl_bwd, dist)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        total, base = batch
        shard = (self.trainer.global_rank, self.trainer.world_size) if self._trainer is not None else (0, 1)
        terms = self.loss_terms(total, base, update_prior=True, shard=shard)
        loss = terms.total(self.loss_weights)
        self.check_loss(
            loss, detail=lambda: f"terms {[name for name, value in terms.items().items() if not torch.isfinite(value)]}"
        )
        size = total.shape[0]
        for name, value in terms.items().items():
            self.log(f"train/{name}", value, batch_size=size, prog_bar=name == "commutativity", sync_dist=shard[1] > 1)
        self.log("train/loss", loss, batch_size=size, sync_dist=shard[1] > 1)
        return loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        base, fibers = batch[0], batch[1]
        flat = fibers.reshape(-1, fibers.shape[-1])
        target = base.repeat_interleave(fibers.shape[1], dim=0)
        base_hat, _ = self.encode(flat, self.cover.assign(target))
        self.log("val/commutativity", commutativity_error(base_hat, target), batch_size=base.shape[0], sync_dist=True)

    # ----------------------------------------------------------------- public API
    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        d_e = self.spec.total_dim
        out = []
        for chunk in base.split(CHUNK):
            nbhd = self.cover.assign(chunk)
            z = self.prior.sample(self.prior.stats, nbhd, generator)
            out.append(self.unstandardize(self.decode(chunk, z, nbhd)[:, :d_e]))
        return torch.cat(out) if out else base.new_zeros(0, d_e)

    @torch.no_grad()
    def trivialize(self, total: object, units: Units = "original") -> Trivialized:
        """φ(x) through the chart consistent with x: ``[N, d_E]`` → :class:`Trivialized`.

        ``total`` and the returned ``base`` are in ``units`` (see :meth:`sample_fiber`).

        Every chart k is tried: φ_k(x) = (ŷ_k, z_k). A chart is consistent when ŷ_k lies in its
        own neighbourhood. Among consistent charts (all charts if none is), the chosen one is
        the chart under whose fiber prior z_k is most likely: far-away charts extrapolate and
        send x to latents no point of their neighbourhood has.
        """
        x = self.check_total(total, units)
        original = units == "original"
        k = self.cover.num_nbhds
        bases, latents = [], []
        for chunk in x.split(max(1, CHUNK // k)):
            rep = chunk.repeat_interleave(k, dim=0)
            nbhd = torch.arange(k, device=x.device).repeat(chunk.shape[0])
            b, z = self.encode(rep, nbhd)
            bases.append(b.reshape(chunk.shape[0], k, -1))
            latents.append(z.reshape(chunk.shape[0], k, -1))
        base, latent = torch.cat(bases), torch.cat(latents)
        lands_in = self.cover.assign(base.reshape(-1, base.shape[-1])).reshape(base.shape[:2])
        consistent = lands_in == torch.arange(k, device=x.device)
        consistent = consistent | ~consistent.any(dim=1, keepdim=True)
        nll = self.prior.negative_log_likelihood(latent)
        chart = torch.where(consistent, nll, torch.full_like(nll, float("inf"))).argmin(dim=1)
        rows = torch.arange(x.shape[0], device=x.device)
        chosen = base[rows, chart]
        return Trivialized(self.spec.to_original(chosen, "base") if original else chosen, latent[rows, chart], chart)

    @torch.no_grad()
    def latent_codes(self, total: Tensor, base: Tensor) -> tuple[Tensor, Tensor, int]:
        """The encoded fiber latents of training points ``(total, base)`` (scaled units) in the
        chart of their own neighbourhood, the neighbourhoods, and the circle pairs."""
        nbhd = self.cover.assign(base)
        _, latent = self.encode(total, nbhd)
        return latent, nbhd, self.prior.num_circles

    def project(self, total: object, units: Units = "original") -> Tensor:
        """proj₁∘φ: ``[N, d_E]`` → ``[N, d_B]``, the learned bundle map (both in ``units``)."""
        return self.trivialize(total, units).base


def _check_options(num_nbhds: int, overlap: int, context: str) -> None:
    if num_nbhds < 1:
        raise InputError(f"model.num_nbhds must be at least 1, got {num_nbhds}")
    if not 1 <= overlap <= num_nbhds:
        raise InputError(f"model.overlap must be between 1 and model.num_nbhds={num_nbhds}, got {overlap}")
    if context not in ("centre", "embedding", "both"):
        raise InputError(f"model.context must be one of centre, embedding, both; got {context!r}")


def _loss_weights(given: dict[str, float] | None) -> dict[str, float]:
    """The default loss weights with those ``given`` in their place; unknown keys are refused."""
    weights = dict(DEFAULT_WEIGHTS)
    weights.update({str(k): float(v) for k, v in (given or {}).items()})
    unknown = set(weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise InputError(f"unknown model.loss_weights keys {sorted(unknown)}; use {sorted(DEFAULT_WEIGHTS)}")
    return weights


def _check_dims(d_e: int, d_b: int, total_dim: int, num_circles: int) -> None:
    if num_circles < 0:
        raise InputError(f"model.num_circles must be >= 0, got {num_circles}")
    need = max(d_e, d_b + 1)
    if total_dim < need:
        raise InputError(
            f"model.total_dim={total_dim} is too small: it must be at least max(d_E={d_e}, d_B+1={d_b + 1}) = {need}"
        )
    if 2 * num_circles > total_dim - d_b:
        raise InputError(
            f"model.num_circles={num_circles} needs 2*num_circles <= model.total_dim - d_B = {total_dim - d_b}; "
            f"lower model.num_circles or raise model.total_dim"
        )
