"""BundleNet, the default ``model=bundlenet``: local trivializations trained by exact likelihood."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from bundlenet.bundles.base import BundleSpec, Units
from bundlenet.errors import InputError
from bundlenet.models.base import CHUNK, BundleModel, OptimizerFactory, SchedulerFactory, Trivialized
from bundlenet.nn.cover import Cover, capped_count
from bundlenet.nn.fiber_cnf import FiberCNF
from bundlenet.nn.fiber_prior import FiberLatent
from bundlenet.nn.frames import LocalFrames
from bundlenet.nn.gaussian import log_normal
from bundlenet.nn.losses import commutativity_error
from bundlenet.nn.trivialization import ConditionalMLP, FiberFlow
from bundlenet.ranks import FirstRankLog

log = FirstRankLog(__name__)

FiberContext = Literal["chart", "none", "base"]
FiberFlowKind = Literal["coupling", "cnf"]


class BundleNet(BundleModel):
    r"""A Bundle Network (Courts & Kvinge, *Bundle Networks*, ICLR 2022) whose local
    trivializations are trained by exact maximum likelihood.

    On the neighbourhood U of a base point, the local trivialization is

    .. math::
        φ_U(x) = (\hat y, z), \qquad \hat y = \hat π(x), \qquad
        z = f_{\hat y}\big(r\big),\quad r = F_{\hat y}(x),

    with :math:`\hat π` a projection network (trained so that π = proj₁∘φ: the commutativity
    loss), :math:`F_y` the affine local frame of the cover's neighbourhoods
    (:class:`~bundlenet.nn.frames.LocalFrames`), :math:`f_y` the fiber flow (``fiber_flow``:
    ``coupling``, spline couplings, :class:`~bundlenet.nn.trivialization.FiberFlow`; or ``cnf``,
    a continuous flow, :class:`~bundlenet.nn.fiber_cnf.FiberCNF`), and z in a fiber latent with the fiber's
    topology (:class:`~bundlenet.nn.fiber_prior.FiberLatent`: circle pairs, intervals, narrow
    normal coordinates). Given the true base point y, the density of x is exact,

    .. math::
        \log p(x \mid y) = \log p_F\big(f_y(F_y(x))\big) + \log\lvert\det ∂f_y/∂r\rvert
        + \log\lvert\det ∂F_y/∂x\rvert,

    and training minimises ``−mean log p(x | y) + commutativity_weight · mean‖π̂(x) − y‖``
    (standardised units; with ``fiber_flow=cnf`` the flow-matching loss of f takes the place of
    the likelihood, and the density is that of the ODE's change of variables). Sampling the fiber over y is :math:`x = F_y^{-1}(f_y^{-1}(z))`,
    :math:`z \sim p_F`: the fiber's position and the directions off it follow y continuously,
    and so does its shape (``fiber_context=base``; ``none`` shares one shape everywhere).

    The shape is smoothed over the base by noise regularization of the conditional density
    (Rothfuss et al., *Noise Regularization for Conditional Density Estimation*, 2019): in
    training, the fiber-shape couplings see :math:`c + σ ε`, ε ~ N(0, I), with σ =
    ``context_noise`` × the cover's bandwidth h, while the normal couplings, the affine map and
    the frames see the exact y. Each base point has one training point on its fiber, so without
    it the density along a fiber follows the few training points whose base is near y (clumps
    and gaps along a circle that is uniform); with it, the shape at y is fitted to the points of
    a band of width about σ around y. Blurring also moves a fiber's ends where its extent
    changes with y (an arc that grows), which puts samples past them, so σ is damped by
    clamp(2 − v / τ, 0, 1): v is the relative change of the fiber's spread between neighbouring
    neighbourhoods (:meth:`~bundlenet.nn.frames.LocalFrames.shape_change`), and τ =
    ``SHAPE_TOLERANCE`` = 0.05 is above its scatter where every fiber has the same shape (0.025
    to 0.05 on the torus and the Möbius band, 1000 points); an arm's reachable poses (0.15) and
    arcs from a full circle to a sliver (0.3) get none. Where each neighbourhood is one base
    value (a class), h, and with it σ, is 0.

    Args:
        spec: names, scalings and supports of the data (:class:`BundleSpec` or its dict).
        num_nbhds: neighbourhoods of the cover; ``None`` chooses from the data at fit time
            (about one per ``points_per_nbhd`` training points, at most ``max_nbhds`` and the
            number of distinct base points; neighbourhoods of fewer than ``points_per_nbhd / 4``
            points are merged into their neighbours).
        points_per_nbhd: training points per neighbourhood when ``num_nbhds`` is ``None``.
        max_nbhds: the most neighbourhoods chosen from the data.
        num_circles: circle factors of a fiber; ``None`` takes the data's (``spec.fiber_circles``).
        fiber_span: how many directions a fiber spreads in (a circle: 2); ``None`` takes the
            data's (``spec.fiber_span``; without one, d_E − d_B + 2·circles, capped at D).
        num_blocks: coupling blocks of the fiber flow (``coupling``).
        hidden_features: width of the couplings' networks and of the projection network.
        depth: hidden layers of the couplings' networks and of the projection network.
        num_bins: bins of each rational-quadratic spline.
        tail_bound: the splines act on [−tail_bound, tail_bound] (identity outside).
        fiber_flow: ``coupling`` (spline couplings, trained by likelihood) or ``cnf`` (an ODE
            trained by flow matching).
        velocity_features: width of the ``cnf`` velocity network.
        velocity_depth: hidden layers of the ``cnf`` velocity network.
        ode_steps: fixed solver steps of the ``cnf`` flow on [0, 1].
        ode_method: the ``cnf`` solver: ``euler``, ``midpoint`` or ``rk4``.
        fiber_context: what the fiber-shape couplings see: ``base`` (y itself), ``chart``
            (the cover's blended centre) or ``none``.
        context_noise: while training, the fiber-shape couplings see their context plus
            Gaussian noise of standard deviation ``context_noise`` × the cover's
            partition-of-unity bandwidth, damped where the fiber's shape changes between
            neighbourhoods (:meth:`context_sigma`; 0: no noise). The normal couplings and the
            affine map see the exact y.
        ring_width: width of the latent's circles.
        normal_width: width of the latent's normal coordinates.
        learn_widths: train a width factor per interval and normal latent coordinate with the
            likelihood (:class:`~bundlenet.nn.fiber_prior.FiberLatent`).
        commutativity_weight: weight of ‖π̂(x) − y‖ in the loss.
        overlap: bandwidth of the cover's partition of unity, in centre spacings.
        cover_seed: seed of k-means.
        optimizer: factory of the optimizer (``model.optimizer``), given the parameters.
        scheduler: factory of the learning-rate schedule (``model.scheduler``), given the optimizer.
    """

    has_density = True
    uses_topology = True
    learned_projection = True
    SHAPE_TOLERANCE = 0.05  # shape change v: full context noise up to it, none from twice it

    def __init__(
        self,
        spec: BundleSpec | dict[str, Any],
        num_nbhds: int | None = None,
        points_per_nbhd: int = 40,
        max_nbhds: int = 64,
        num_circles: int | None = None,
        fiber_span: int | None = None,
        num_blocks: int = 4,
        hidden_features: int = 96,
        depth: int = 2,
        num_bins: int = 8,
        tail_bound: float = 5.0,
        fiber_flow: FiberFlowKind = "coupling",
        velocity_features: int = 256,
        velocity_depth: int = 4,
        ode_steps: int = 16,
        ode_method: str = "midpoint",
        fiber_context: FiberContext = "base",
        context_noise: float = 1.0,
        ring_width: float = 0.1,
        normal_width: float = 0.05,
        learn_widths: bool = False,
        commutativity_weight: float = 10.0,
        overlap: float = 1.0,
        cover_seed: int = 0,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(spec, optimizer, scheduler)
        d_e, d_b = self.spec.total_dim, self.spec.base_dim
        dim, span, circles, fiber_span = _latent_shape(self.spec, num_circles, fiber_span)
        _check_options(num_nbhds, fiber_context, fiber_flow, context_noise)
        self.save_options()  # with fiber_span resolved from the data
        self.dim, self.span, self.circles = dim, span, circles
        self.cover = Cover(num_nbhds or 1, d_b)
        self.frames = LocalFrames(self.cover.num_nbhds, d_b, d_e, span)
        self.latent = FiberLatent(dim, circles, span, ring_width, normal_width, learn_widths)
        chart_features = 0 if fiber_context == "none" else d_b
        self.flow: FiberFlow | FiberCNF
        if fiber_flow == "cnf":
            self.flow = FiberCNF(dim, d_b + chart_features, velocity_features, velocity_depth, ode_steps, ode_method)
        else:
            self.flow = FiberFlow(dim, span, d_b, chart_features, num_blocks, hidden_features, depth, num_bins, tail_bound)
        self.projection = ConditionalMLP(d_e, d_b, 0, hidden_features, depth)
        nn.init.normal_(self.projection.out.weight, std=1e-3)
        self._context_sigma: float | None = None  # from the fitted cover and frames, on first use
        self.register_load_state_dict_post_hook(_forget_context_sigma)  # loaded buffers: σ anew

    # ----------------------------------------------------------------- data-dependent state
    def fit_extra(self, total: Tensor, base: Tensor) -> None:
        x = self.standardize(total, generator=torch.Generator(device=total.device).manual_seed(0))
        y = self.base_scaler(base)
        chosen = self.hparams["num_nbhds"]
        k = chosen or self.auto_nbhds(y)
        if k != self.cover.num_nbhds:
            self.cover = Cover(k, self.spec.base_dim).to(y)
        # a cover chosen from the data merges neighbourhoods of too few points (the base's tails)
        least = 1 if chosen else max(2, self.hparams["points_per_nbhd"] // 4)
        sizes = self.cover.fit(y, seed=self.hparams["cover_seed"], overlap=self.hparams["overlap"], min_points=least)
        k = self.cover.num_nbhds
        if k != self.frames.centre.shape[0]:
            self.frames = LocalFrames(k, self.spec.base_dim, self.spec.total_dim, self.span).to(y)
        self.frames.fit(x, y, self.cover, values=self.standardize(total, dequantize=False))
        self.hparams["num_nbhds"] = k  # checkpoints rebuild the same cover
        self._context_sigma = None
        log.info(
            "cover: %d neighbourhoods (%d-%d training points each); fiber latent: %d circle(s), "
            "%d fiber and %d normal direction(s) of %d; shape change %.3g between neighbourhoods, "
            "context noise %.3g",
            k,
            int(sizes.min()),
            int(sizes.max()),
            self.circles,
            self.span,
            self.dim - self.span,
            self.dim,
            self.frames.shape_change(self.cover),
            self.context_sigma(),
        )

    def auto_nbhds(self, base: Tensor) -> int:
        """About one neighbourhood per ``points_per_nbhd`` training points, at most ``max_nbhds``
        and the number of distinct base points."""
        wanted = base.shape[0] // max(1, self.hparams["points_per_nbhd"])
        return capped_count(base, min(wanted, self.hparams["max_nbhds"]))

    # ----------------------------------------------------------------- pieces (standardised units)
    def context(self, y: Tensor, noisy: bool = False) -> Tensor:
        """Context of the fiber flow at standardised base points ``y [N, d_B]``: y, then the chart's;
        with ``noisy``, the chart's part plus N(0, (context_noise · bandwidth)²) noise (training)."""
        mode = self.hparams["fiber_context"]
        if mode == "none":
            return y
        chart = self.cover.weights(y) @ self.cover.centres if mode == "chart" else y
        sigma = self.context_sigma() if noisy else 0.0
        if sigma > 0:
            chart = chart + sigma * torch.randn_like(chart)
        return torch.cat([y, chart], dim=1)

    def context_sigma(self) -> float:
        """σ of the training noise on the fiber-shape context (standardised base units):
        ``context_noise`` × the cover's bandwidth h × clamp(2 − v / τ, 0, 1), with v the frames'
        shape change between neighbouring neighbourhoods (:meth:`LocalFrames.shape_change`) and
        τ = ``SHAPE_TOLERANCE``: the full noise up to v = τ, none from v = 2τ. It is computed
        from the cover and frames (checkpointed buffers) on first use after they are fitted or
        loaded, so a resumed run uses the same σ."""
        if self._context_sigma is None:
            scale = self.hparams.get("context_noise", 0.0)
            if scale == 0 or self.cover.num_nbhds < 2 or self.hparams["fiber_context"] == "none":
                self._context_sigma = 0.0
            else:
                damping = min(1.0, max(0.0, 2.0 - self.frames.shape_change(self.cover) / self.SHAPE_TOLERANCE))
                self._context_sigma = scale * float(self.cover.bandwidth) * damping
        return self._context_sigma

    def pad(self, r: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Local coordinates ``[N, d_E]`` padded to the latent dimension D with normal-width noise ε,
        and log q(ε) ``[N]`` (0 without padding)."""
        extra = self.dim - r.shape[1]
        if extra == 0:
            return r, r.new_zeros(r.shape[0])
        noise = self.latent.normal_width * torch.randn(r.shape[0], extra, generator=generator, device=r.device, dtype=r.dtype)
        log_q = log_normal(noise, 0.0, self.latent.normal_width).sum(1)
        return torch.cat([r, noise], dim=1), log_q

    def encode(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Standardised ``x [N, d_E]`` over standardised ``y [N, d_B]`` → (z ``[N, D]``,
        log|det ∂z/∂(x, ε)| ``[N]``, log q(ε) of the padding ``[N]``)."""
        padded, frame_logdet, log_q = self.local_coordinates(x, y, generator)
        z, flow_logdet = self.flow(padded, self.context(y))
        return z, frame_logdet + flow_logdet, log_q

    def local_coordinates(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The frame's coordinates of standardised ``x [N, d_E]`` over ``y [N, d_B]``, padded to D:
        (r ``[N, D]``, log|det ∂r/∂x| ``[N]``, log q(ε) of the padding ``[N]``)."""
        r, frame_logdet = self.frames.to_local(x, y, self.cover)
        padded, log_q = self.pad(r, generator)
        return padded, frame_logdet, log_q

    def decode(self, z: Tensor, y: Tensor) -> Tensor:
        """Fiber latents ``z [N, D]`` over standardised ``y [N, d_B]`` → standardised points ``[N, d_E]``."""
        r = self.flow.decode(z, self.context(y))
        return self.frames.from_local(r[:, : self.spec.total_dim], y, self.cover)

    def log_likelihood(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """log p(x | y) in standardised units ``[N]``. With padding coordinates (D > d_E) it is
        log p(x, ε | y) − log q(ε) for one draw of the padding ε: on average a lower bound on
        log p(x | y); exact without padding."""
        z, logdet, log_q = self.encode(x, y, generator)
        return self.latent.log_prob(z) + logdet - log_q

    # ----------------------------------------------------------------- training
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        total, base = self.rank_share(*batch)
        x, y = self.standardize(total), self.base_scaler(base)
        padded, frame_logdet, log_q = self.local_coordinates(x, y)
        fit = self.flow.objective(padded, self.context(y, noisy=True), self.latent)
        comm = commutativity_error(self.projection(x), y)
        loss = fit + self.hparams["commutativity_weight"] * comm
        self.check_loss(loss, detail=lambda: f"fiber flow {float(fit.detach()):.4g}, commutativity {float(comm.detach()):.4g}")
        size = total.shape[0]
        sync = self._trainer is not None and self.trainer.world_size > 1
        if self.flow.likelihood_trained:  # −mean log p(x | y): the flow's term and the frames' constant ones
            self.log("train/nll", fit - (frame_logdet - log_q).mean(), batch_size=size, sync_dist=sync)
        else:
            self.log("train/flow_matching", fit, batch_size=size, sync_dist=sync)
        self.log("train/commutativity", comm * self.base_scaler.scale, batch_size=size, prog_bar=True, sync_dist=sync)
        self.log("train/loss", loss, batch_size=size, sync_dist=sync)
        return loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        base, fibers = batch[0], batch[1]
        flat = fibers.reshape(-1, fibers.shape[-1])
        target = base.repeat_interleave(fibers.shape[1], dim=0)
        y_hat = self.base_scaler.inverse(self.projection(self.standardize(flat, dequantize=False)))
        self.log("val/commutativity", commutativity_error(y_hat, target), batch_size=base.shape[0], sync_dist=True)

    def selection_score(self, fibers: Tensor, bases: Tensor) -> Tensor:
        """−mean log p(x | y) of the validation points (standardised units, cell centres of
        discrete columns, padding drawn with a fixed seed): the held-out likelihood."""
        flat = fibers.reshape(-1, fibers.shape[-1])
        y = self.base_scaler(bases.reshape(-1, bases.shape[-1]))
        gen = torch.Generator(device=flat.device).manual_seed(0)
        with torch.no_grad():
            return -self.log_likelihood(self.standardize(flat, dequantize=False), y, gen).mean()

    # ----------------------------------------------------------------- public API
    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        out = []
        for chunk in base.split(CHUNK):
            y = self.base_scaler(chunk)
            z = self.latent.sample(chunk.shape[0], generator, device=chunk.device, dtype=chunk.dtype)
            out.append(self.round_on_fiber(self.decode(z, y), y))
        return torch.cat(out) if out else base.new_zeros(0, self.spec.total_dim)

    def round_on_fiber(self, u: Tensor, y: Tensor) -> Tensor:
        """Standardised samples ``u [N, d_E]`` over ``y [N, d_B]`` → scaled units, with discrete
        columns rounded so that the sample stays over y.

        Rounding each discrete column to its nearest allowed value moves the sample off its base
        point wherever the base depends on those columns (8×8 digits over their ink: values past
        the ends of a pixel's range are all rounded to the end, adding ink). With the frame's
        base gradient A(y) (:class:`~bundlenet.nn.frames.LocalFrames`: zero where the fiber spans
        every direction of the data, for a base coordinate that is constant in each neighbourhood
        such as a class, and in checkpoints from before it), the drift e = A(y)ᵀ(s(x) − u), with
        s(x) the standardised cell centres of x, is reduced greedily: the columns are taken in
        order of what they lose by rounding the other way, and each is rounded the other way if
        that shrinks |e|. Without a gradient or discrete columns it is the nearest rounding."""
        x, other, extra = self.columns.rounding_choices(self.total_scaler.inverse(u))
        candidates = torch.isfinite(extra)
        if not bool(candidates.any()):
            return x
        gradient = self.frames.gradient_at(y, self.cover)  # [N, d, d_B]
        if not bool(gradient.abs().amax() > 0):
            return x
        centres = self.total_scaler(self.columns(x, dequantize=False))
        drift = torch.einsum("ndb,nd->nb", gradient, centres - u)
        # the drift's change per flip, in the same cell-centre units (values need not be evenly spaced)
        gain = gradient * (self.total_scaler(self.columns(other, dequantize=False)) - centres).unsqueeze(-1)  # [N, d, d_B]
        order = extra.argsort(dim=1)
        rows = torch.arange(x.shape[0], device=x.device)
        for column in order.T[: int(candidates.sum(1).max())]:
            step = gain[rows, column]
            better = candidates[rows, column] & ((drift + step).norm(dim=1) < drift.norm(dim=1))
            drift = torch.where(better.unsqueeze(1), drift + step, drift)
            x[rows[better], column[better]] = other[rows[better], column[better]]
        return x

    @torch.no_grad()
    def trivialize(self, total: object, units: Units = "original") -> Trivialized:
        """φ(x): ``[N, d_E]`` → :class:`Trivialized` (ŷ = π̂(x) in ``units``, the fiber latent
        z ``[N, D]``, and the neighbourhood of ŷ)."""
        x = self.check_total(total, units)
        bases, latents = [], []
        for chunk in x.split(CHUNK):
            s = self.standardize(chunk, dequantize=False)
            y = self.projection(s)
            z, _, _ = self.encode(s, y, torch.Generator(device=s.device).manual_seed(0))
            bases.append(self.base_scaler.inverse(y))
            latents.append(z)
        base = torch.cat(bases)
        neighbourhood = self.cover.assign(self.base_scaler(base))
        return Trivialized(
            self.spec.to_original(base, "base") if units == "original" else base, torch.cat(latents), neighbourhood
        )

    def project(self, total: object, units: Units = "original") -> Tensor:
        """proj₁∘φ = π̂: ``[N, d_E]`` → ``[N, d_B]``, the learned bundle map (both in ``units``)."""
        return self.trivialize(total, units).base

    def density_std(self, u: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """:meth:`log_likelihood` (the shared interface of :meth:`BundleModel.log_prob`): exact when
        the latent has no padding coordinates (D = d_E, e.g. the torus); otherwise
        log p(x, ε | y) − log q(ε) for one draw ε, whose exponential is an unbiased estimate of
        p(x | y) (its mean a lower bound on log p(x | y)); with ``fiber_flow=cnf``, exact up to
        the ODE solver's discretisation."""
        return torch.cat([self.log_likelihood(us, ys, generator) for us, ys in zip(u.split(CHUNK), y.split(CHUNK))])

    def projection_std(self, u: Tensor) -> Tensor:
        """π̂ on standardised points: the projection network."""
        return self.projection(u)

    @torch.no_grad()
    def latent_codes(self, total: Tensor, base: Tensor) -> tuple[Tensor, Tensor, int]:
        """The fiber latents of training points ``(total, base)`` (scaled units) over their own
        base points, their neighbourhoods, and the number of circle pairs (for ``latent.png``)."""
        x, y = self.standardize(total, dequantize=False), self.base_scaler(base)
        z, _, _ = self.encode(x, y, torch.Generator(device=x.device).manual_seed(0))
        return z, self.cover.assign(y), self.circles


def _latent_shape(spec: BundleSpec, num_circles: int | None, fiber_span: int | None) -> tuple[int, int, int, int]:
    """The fiber latent's dimension D, span and circles, and the fiber span resolved from the data
    (``None``: ``spec.fiber_span``, else d_E − d_B + 2·circles) before it is capped at D."""
    d_e, d_b = spec.total_dim, spec.base_dim
    circles = spec.fiber_circles if num_circles is None else int(num_circles)
    if circles < 0:
        raise InputError(f"model.num_circles must be >= 0, got {circles}")
    dim = max(d_e, 2 * circles, 2)
    if fiber_span is None:
        fiber_span = spec.fiber_span if spec.fiber_span is not None else d_e - d_b + 2 * circles
    span = min(max(int(fiber_span), 2 * circles, 1), dim)
    return dim, span, circles, fiber_span


def _forget_context_sigma(model: BundleNet, incompatible_keys: object) -> None:
    """After ``load_state_dict``: σ is computed anew from the loaded cover and frames."""
    model._context_sigma = None


def _check_options(num_nbhds: int | None, fiber_context: str, fiber_flow: str, context_noise: float) -> None:
    if num_nbhds is not None and num_nbhds < 1:
        raise InputError(f"model.num_nbhds must be at least 1 (or null to choose from the data), got {num_nbhds}")
    if fiber_context not in ("chart", "none", "base"):
        raise InputError(f"model.fiber_context must be chart, none or base; got {fiber_context!r}")
    if fiber_flow not in ("coupling", "cnf"):
        raise InputError(f"model.fiber_flow must be coupling or cnf; got {fiber_flow!r}")
    if not (math.isfinite(context_noise) and context_noise >= 0):
        raise InputError(f"model.context_noise must be a finite number >= 0 (0: no noise); got {context_noise}")
