"""What every bundlenet model shares: data statistics, the sampling API, fiber validation."""

from __future__ import annotations

import copy
import hashlib
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from bundlenet.bundles.base import BundleSpec, Units, check_points, check_units, snap_to_support
from bundlenet.errors import DivergenceError, InputError, positive_int
from bundlenet.geometry import per_query, project_to_level_set, wasserstein
from bundlenet.nn.resimulator import ColumnRange, Resimulator
from bundlenet.nn.support import SupportTransform

if TYPE_CHECKING:
    import pandas as pd

    from bundlenet.forward import ForwardMap

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]
# state older checkpoints lack and their loaders fill in
_FILLED_IN = (
    "frames.gradient",
    "frames.reference",
    "latent.log_scale",
    "total_range.low",
    "total_range.high",
    "total_range.fitted",
    "resimulator.weight",
    "resimulator.phase",
    "resimulator.coef",
    "resimulator.fitted",
)
REFINE_STEPS = 20  # Gauss–Newton steps of refine=True
CHUNK = 8192  # rows per pass of a model's networks in sampling, trivialize and log_prob: bounds the activation memory


@dataclass(frozen=True)
class Trivialized:
    """φ applied to total-space points.

    Attributes:
        base: ``[N, d_B]`` proj₁∘φ(x), the predicted base point (in the units asked for).
        fiber: ``[N, L]`` the fiber latent: BundleNet's whole latent (L = D, its latent
            dimension), the authors' model's latent after the base coordinates (L = D − d_B).
        neighbourhood: ``[N]`` the neighbourhood whose chart was used.
    """

    base: Tensor
    fiber: Tensor
    neighbourhood: Tensor


class Standardizer(nn.Module):
    """Isotropic affine scaling ``(x − mean) / scale``, fitted on training data.

    One scale for all coordinates (the root mean per-coordinate variance) keeps the geometry
    of the data: distances, and so the fiber losses, are only rescaled, never distorted.
    """

    mean: Tensor
    scale: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))

    def fit(self, x: Tensor) -> None:
        self.mean.copy_(x.mean(0))
        if x.shape[0] > 1:
            self.scale.copy_(x.var(0).mean().sqrt().clamp_min(1e-6))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.scale

    def inverse(self, x: Tensor) -> Tensor:
        return x * self.scale + self.mean


class EmpiricalBase(nn.Module):
    """The training base points, kept so ``sample(n)`` draws base points like the data.

    Its buffer is resized on loading, so a checkpoint of any data size loads.
    """

    points: Tensor

    def __init__(self, dim: int, capacity: int = 100_000) -> None:
        super().__init__()
        self.capacity = capacity
        self.register_buffer("points", torch.zeros(0, dim))

    def fit(self, base: Tensor, generator: torch.Generator | None = None) -> None:
        if base.shape[0] > self.capacity:
            base = base[torch.randperm(base.shape[0], generator=generator)[: self.capacity]]
        self.points = base.detach().clone().to(self.points)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        key = prefix + "points"
        if key in state_dict:
            self.points = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def warn_if_far(self, base: Tensor, spec: BundleSpec, fraction: float = 0.1) -> None:
        """Warn about base points (``[B, d_B]``, scaled units) farther than ``fraction`` × the
        training base extent from every training base point: their fibers are extrapolated.

        The message is in the table's own units (``spec.to_original``): the base point as the
        user gave it, the nearest training base point and the training range of each column.
        """
        if self.points.shape[0] == 0:
            return
        extent = float((self.points.max(0).values - self.points.min(0).values).norm())
        base = base.to(self.points)
        nearest = per_query(base, self.points, lambda d: d.argmin(dim=1))
        distance = (base - self.points[nearest]).norm(dim=1)
        far = (distance > fraction * extent).nonzero().squeeze(1).tolist()
        if not far:
            return
        names = spec.base_names
        original = spec.to_original(base, "base")
        training = spec.to_original(self.points, "base")
        ranges = ", ".join(
            f"{n} {lo:.4g} to {hi:.4g}"
            for n, lo, hi in zip(names, training.min(0).values.tolist(), training.max(0).values.tolist(), strict=True)
        )
        for i in far[:5]:
            log.warning(
                "base point %d (%s) is far from every training base point (nearest: %s; training range: %s): "
                "its fiber is extrapolated",
                i,
                _named(names, original[i]),
                _named(names, training[nearest[i]]),
                ranges,
            )

    def draw(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        if self.points.shape[0] == 0:
            raise InputError("this model has no training base points; train it (or load a trained checkpoint) before sample()")
        idx = torch.randint(self.points.shape[0], (num_samples,), generator=generator, device=self.points.device)
        return self.points[idx]


def _named(names: tuple[str, ...] | list[str], point: Tensor) -> str:
    """``"u=4.5, v=0"``: a base point ``[d_B]`` with its column names."""
    return ", ".join(f"{n}={v:.4g}" for n, v in zip(names, point.tolist(), strict=True))


class BundleModel(pl.LightningModule, ABC):
    """Base class of BundleNet and the baselines.

    Subclasses implement :meth:`generate` (one total-space point per base point) and the
    training step; this class gives them the public sampling API (docs/sampling.md), fiber-wise
    validation (exact-OT W2 against true fibers, logged as ``val/fiber_w2`` and its ratio to
    the noise floor; the checkpoint criterion ``val/selection``, :meth:`selection_score`),
    optimizers, and checkpoint metadata.

    A model whose samples cannot depend on a base point (an unconditional generator) sets
    ``conditional = False``: it still samples globally, but :meth:`sample_fiber` refuses.
    ``data_config`` (the resolved data config of the training run, plain types) is stored in
    checkpoints so an evaluation can rebuild the true bundle from the checkpoint alone.
    """

    conditional: ClassVar[bool] = True
    has_density: ClassVar[bool] = False  # density_std is implemented (log_prob, fixed= of sample_frame)
    uses_topology: ClassVar[bool] = False  # the latent takes the fiber's span and circles from the spec (bundlenet.selection)
    learned_projection: ClassVar[bool] = False  # the model learns π̂ itself (else a Resimulator is fitted)
    data_config: dict[str, Any] | None = None
    data_hash: str | None = None  # of the training points (fit_data); checkpoints keep it
    run_dir: Path | None = None  # set by bundlenet.fit: the run's directory
    metrics: dict[str, Any] | None = None  # set by bundlenet.fit: the run's metrics.json
    fitted: Tensor  # a buffer: whether fit_data has run

    def __init__(
        self,
        spec: BundleSpec | dict[str, Any],
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        self.spec = BundleSpec.coerce(spec)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.columns = SupportTransform(self.spec)
        self.total_scaler = Standardizer(self.spec.total_dim)
        self.base_scaler = Standardizer(self.spec.base_dim)
        self.base_bank = EmpiricalBase(self.spec.base_dim)
        self.total_range = ColumnRange(self.spec.total_dim)
        if not self.learned_projection:
            self.resimulator = Resimulator(self.spec.total_dim, self.spec.base_dim)
        self.register_buffer("fitted", torch.tensor(False))

    def save_options(self, **resolved: Any) -> None:
        """Save the calling ``__init__``'s arguments (and those of its subclasses' ``__init__``) as
        ``hparams``, from which checkpoints rebuild the model: all but ``optimizer`` and
        ``scheduler``, ``spec`` in plain types (``weights_only`` checkpoints), and the values in
        ``resolved`` in place of the given ones (e.g. options completed from defaults)."""
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], frame=caller)
        self.hparams.update(spec=self.spec.to_dict(), **resolved)
        self._hparams_initial = copy.deepcopy(self._hparams)  # what the loggers record: the same values

    def check_loss(
        self,
        loss: Tensor,
        what: str = "loss",
        detail: Callable[[], str] | None = None,
        fix: str = "lower model.optimizer.lr or set trainer.gradient_clip_val",
    ) -> None:
        """Raise :class:`DivergenceError` ``non-finite <what> at step N (<detail>); <fix>`` when a
        training loss is not finite (``detail`` is only evaluated then)."""
        if not torch.isfinite(loss):
            extra = f" ({detail()})" if detail is not None else ""
            raise DivergenceError(f"non-finite {what} at step {self.global_step}{extra}; {fix}")

    # ----------------------------------------------------------------- data-dependent state
    def setup(self, stage: str) -> None:
        if stage == "fit" and not bool(self.fitted):
            datamodule = self.trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets it at run time
            if datamodule is None or not hasattr(datamodule, "train_tensors"):
                raise InputError("fit this model with a bundlenet datamodule (trainer.fit(model, datamodule=...))")
            self.fit_data(*datamodule.train_tensors())

    @torch.no_grad()
    def fit_data(self, total: Tensor, base: Tensor) -> None:
        """Fit everything that depends on the training data (scalers, cover, ...) before training."""
        total = check_points(total, self.spec.total_dim, "training point", self.spec.total_names)
        base = check_points(base, self.spec.base_dim, "training base point", self.spec.base_names)
        self.columns.fit(total)
        self.total_scaler.fit(self.columns(total, torch.Generator(device=total.device).manual_seed(0)))
        self.base_scaler.fit(base)
        self.base_bank.fit(base)
        self.total_range.fit(total)
        if not self.learned_projection:
            self.resimulator.fit(self.standardize(total, dequantize=False), self.base_scaler(base))
        self.fit_extra(total, base)
        self.fitted.fill_(True)
        self.data_hash = data_hash(total, base)

    def rank_share(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """This process's rows of a batch under data-parallel training (every rank receives the
        same batch, ``trainer=ddp``): rows ``rank, rank + W, ...`` of ``W`` ranks, so the ranks'
        averaged gradients are those of the whole batch. Unchanged with one process."""
        if self._trainer is None or self.trainer.world_size <= 1:
            return tensors
        rank, world = self.trainer.global_rank, self.trainer.world_size
        return tuple(t[rank::world] for t in tensors)

    def fit_extra(self, total: Tensor, base: Tensor) -> None:
        """Hook for model-specific data-dependent state (BundleNet fits its cover here)."""

    def standardize(self, total: Tensor, dequantize: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """Total-space points in scaled units ``[N, d_E]`` → the standardised, unconstrained space
        the networks learn in: each column's support map (:class:`SupportTransform`; random
        dequantization of discrete values and point masses when ``dequantize``), then the
        isotropic standardisation."""
        return self.total_scaler(self.columns(total, generator, dequantize))

    def unstandardize(self, z: Tensor) -> Tensor:
        """Inverse of :meth:`standardize`: ``[N, d_E]`` → scaled units, every column in its support."""
        return self.columns.inverse(self.total_scaler.inverse(z))

    # ----------------------------------------------------------------- sampling API
    @abstractmethod
    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One total-space sample for each base point: ``[N, d_B]`` → ``[N, d_E]``."""

    def check_base(self, base: object, units: Units = "original") -> Tensor:
        """Validate user base points ``[B, d_B]`` in ``units`` and return them on the model in
        its scaled units (``spec.to_scaled``; the identity for synthetic data)."""
        points = self.on_model(base, "base")
        return self.spec.to_scaled(points, "base") if check_units(units) == "original" else points

    def check_total(self, total: object, units: Units = "original") -> Tensor:
        """Validate user total-space points ``[N, d_E]`` in ``units`` and return them on the model
        in its scaled units."""
        x = self.on_model(total, "total")
        return self.spec.to_scaled(x, "total") if check_units(units) == "original" else x

    def on_model(self, points: object, kind: Literal["total", "base"], dtype: torch.dtype | None = None) -> Tensor:
        """Validated user points (``[N, d_E]`` total-space or ``[N, d_B]`` base points, no unit
        conversion) on the model's device in ``dtype`` (default: the model's)."""
        if kind == "total":
            x = check_points(points, self.spec.total_dim, "total-space point", self.spec.total_names)
        else:
            x = check_points(points, self.spec.base_dim, "base point", self.spec.base_names)
        return x.to(self.device, dtype or self.dtype)  # type: ignore[arg-type]  # Lightning types dtype as str | torch.dtype

    def _generator(self, seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
        if generator is not None:
            return generator
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(int(seed))

    @torch.no_grad()
    def sample_fiber(
        self,
        base: object,
        num_samples: int = 200,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        units: Units = "original",
    ) -> Tensor:
        """Sample the fiber over each base point: ``[B, d_B]`` → ``[B, num_samples, d_E]``.

        ``units="original"`` (default): base points and samples in the units of the data file;
        ``"scaled"``: in the model's scaled units (``spec``; identical for synthetic data).
        Base points far from all training base points are sampled, with a warning.
        """
        if not self.conditional:
            raise InputError(
                f"{type(self).__name__} is unconditional: it cannot sample the fiber over a base point; use sample(n) for global samples"
            )
        num_samples = positive_int(num_samples, "num_samples")
        base = self.check_base(base, units)
        self.base_bank.warn_if_far(base, self.spec)
        repeated = base.repeat_interleave(int(num_samples), dim=0)
        x = self._generate_eval(repeated, self._generator(seed, generator))
        x = x.reshape(base.shape[0], int(num_samples), self.spec.total_dim)
        return self.spec.to_original(x, "total") if units == "original" else x

    def _generate_eval(self, base: Tensor, generator: torch.Generator | None) -> Tensor:
        """:meth:`generate` in eval mode (restoring the training flag): ``[N, d_B]`` → ``[N, d_E]``
        (scaled units)."""
        was_training = self.training
        self.eval()
        try:
            return self.generate(base, generator)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        return_base: bool = False,
        units: Units = "original",
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Global samples ``[N, d_E]``, base points drawn from the training base distribution
        (both in ``units``, see :meth:`sample_fiber`)."""
        num_samples = positive_int(num_samples, "num_samples")
        check_units(units)
        gen = self._generator(seed, generator)
        base = self.base_bank.draw(int(num_samples), gen)
        x = self._generate_eval(base, gen)
        if units == "original":
            x, base = self.spec.to_original(x, "total"), self.spec.to_original(base, "base")
        return (x, base) if return_base else x

    # ----------------------------------------------------------------- inverse design
    @torch.no_grad()
    def sample_frame(
        self,
        base: Any,
        num_samples: int = 200,
        *,
        fixed: dict[str, float] | None = None,
        seed: int | None = None,
        refine: bool | int | None = None,
        forward: ForwardMap | None = None,
        units: Units = "original",
        steps: int = 300,
    ) -> pd.DataFrame:
        """Fiber samples as a table: the base columns, then the total columns, one row per
        sample (the sample CLI's CSV layout), in ``units`` (default: the data file's).

        Args:
            base: one point (a number for one base column, ``d_B`` numbers, or ``{column:
                value}``), a list of points, a DataFrame with the base columns (``num_samples``
                rows per point), or ranges ``{column: (lo, hi)}``: ``num_samples`` base points
                drawn from the training base points inside the ranges, one sample each
                (:mod:`bundlenet.models.inverse`).
            num_samples: samples per base point (or in all, for ranges).
            fixed: ``{total column: value}``: those columns hold the value and the others follow
                the model's p(x_free | x_fixed, y) (Metropolis–Hastings, ``steps`` steps; models
                with a density).
            seed: seed of the draws (``None``: torch's global generator).
            refine: ``True`` (``REFINE_STEPS``) or a number of Gauss–Newton steps moving each
                sample onto π(x) = y along the normal of the fiber (:meth:`refine`), with
                ``forward`` when given, else the model's :meth:`resimulate`.
            forward: the true forward map, arrays ``[N, d_E]`` → ``[N, d_B]`` in the data's
                units (torch functions are differentiated exactly, others by finite differences).
        """
        import pandas as pd

        from bundlenet.models.inverse import parse_base

        self._check_frame_request(num_samples, units)
        gen = self._generator(seed, None)
        points, per_point = parse_base(self, base, int(num_samples), gen)
        x, columns = self._frame_samples(self.check_base(points, units), per_point, fixed, units, gen, steps)
        flat_base = points.to(torch.float64).repeat_interleave(per_point, dim=0)  # as given, in ``units``
        flat = x.reshape(-1, self.spec.total_dim)
        if refine:
            newton = REFINE_STEPS if refine is True else int(refine)
            flat = self.refine(flat, flat_base, forward=forward, steps=newton, units=units, keep=list(columns))
        if units == "original":  # discrete values and point masses exactly as in the data
            flat = snap_to_support(flat.cpu(), self.spec.total_support)[0]
        rows = torch.cat([flat_base.to(flat), flat], dim=1).double().cpu().numpy()
        return pd.DataFrame(rows, columns=[*self.spec.base_names, *self.spec.total_names])

    def _check_frame_request(self, num_samples: object, units: Units) -> None:
        if not self.conditional:
            raise InputError(f"{type(self).__name__} is unconditional: it cannot sample over a base point; use sample(n)")
        if not isinstance(num_samples, int) or num_samples <= 0:
            raise InputError(f"num_samples must be a positive integer, got {num_samples}")
        check_units(units)

    def _frame_samples(
        self,
        scaled: Tensor,
        per_point: int,
        fixed: dict[str, float] | None,
        units: Units,
        generator: torch.Generator | None,
        steps: int,
    ) -> tuple[Tensor, dict[int, float]]:
        """The samples of :meth:`sample_frame` over base points ``scaled [B, d_B]`` (scaled units):
        ``[B, per_point, d_E]`` (float64, in ``units``; fixed columns exactly as given) and the
        fixed columns ``{index: value in original units}`` (empty without ``fixed``)."""
        from bundlenet.models.inverse import fixed_columns, sample_fixed

        if not fixed:
            x = self.sample_fiber(scaled, per_point, generator=generator, units="scaled").double()
            return (self.spec.to_original(x, "total") if units == "original" else x), {}
        columns = fixed_columns(self, fixed if units == "original" else self._fixed_to_original(fixed))
        self.base_bank.warn_if_far(scaled, self.spec)
        x = sample_fixed(self, scaled, per_point, columns, generator, steps).double()
        x = self.spec.to_original(x, "total") if units == "original" else x
        given = fixed if units == "scaled" else {self.spec.total_names[j]: v for j, v in columns.items()}
        for name, value in given.items():  # exactly the given values, in the output's units
            x[..., self.spec.total_names.index(name)] = float(value)
        return x, columns

    def _fixed_to_original(self, fixed: dict[str, float]) -> dict[str, float]:
        names = self.spec.total_names
        point = torch.zeros(1, self.spec.total_dim, dtype=torch.float64)
        for name, value in fixed.items():
            if name in names:
                point[0, names.index(name)] = float(value)
        original = self.spec.to_original(point, "total")[0]
        return {name: float(original[names.index(name)]) if name in names else value for name, value in fixed.items()}

    def resimulation_map(self, units: Units = "original") -> Callable[[Tensor], Tensor]:
        """The model's stand-in for π as a differentiable function ``[N, d_E]`` → ``[N, d_B]`` in
        ``units``: BundleNet's projection π̂, else the :class:`Resimulator` fitted on the
        training data."""
        check_units(units)
        if not self.learned_projection and not bool(self.resimulator.fitted):
            raise InputError(
                f"this {type(self).__name__} checkpoint has no re-simulation regressor (written before it "
                f"existed); retrain it, or pass forward= (the true map)"
            )

        def forward(x: Tensor) -> Tensor:
            scaled = self.spec.to_scaled(x.to(self.dtype), "total") if units == "original" else x.to(self.dtype)
            y = self.base_scaler.inverse(self.projection_std(self.standardize(scaled, dequantize=False)))
            return (self.spec.to_original(y, "base") if units == "original" else y).to(x.dtype)

        return forward

    def projection_std(self, u: Tensor) -> Tensor:
        """Standardised total points ``[N, d_E]`` → standardised base points ``[N, d_B]``:
        the :class:`Resimulator` (models with a learned projection override it)."""
        return self.resimulator(u)

    @torch.no_grad()
    def resimulate(self, total: object, units: Units = "original") -> Tensor:
        """π̂(x) ``[N, d_B]`` of points ``total [N, d_E]`` (both in ``units``): BundleNet's learned
        projection, else a regressor fitted on the training data (:class:`Resimulator`)."""
        return self.resimulation_map(units)(self.on_model(total, "total"))

    def refine(
        self,
        total: object,
        base: object,
        *,
        forward: ForwardMap | None = None,
        steps: int = REFINE_STEPS,
        units: Units = "original",
        keep: list[int] | None = None,
    ) -> Tensor:
        """Points ``total [N, d_E]`` moved onto the fiber of π over ``base [N, d_B]`` (both in
        ``units``) by Gauss–Newton steps normal to the fiber over the continuous columns (not those
        in ``keep``), clipped to the columns' bounds: ``[N, d_E]`` (float64). π is ``forward`` (the
        data's units) when given, else :meth:`resimulation_map`."""
        from bundlenet.forward import torch_map
        from bundlenet.models.inverse import refine

        check_units(units)
        if int(steps) < 1:
            raise InputError(f"refine needs at least 1 step, got {steps}")
        x, y = self.on_model(total, "total", torch.float64), self.on_model(base, "base", torch.float64)
        if y.shape[0] != x.shape[0]:
            raise InputError(f"refine needs one base point per point; got {y.shape[0]} for {x.shape[0]} points")
        if forward is None:
            pi = self.resimulation_map(units)
        else:
            user = torch_map(forward)
            pi = user if units == "original" else (lambda v: self.spec.to_scaled(user(self.spec.to_original(v, "total")), "base"))
        with torch.enable_grad():
            return refine(self, x, y, pi, int(steps), keep or ())

    def project_start(self, u: Tensor, y: Tensor, free: Tensor) -> Tensor:
        """Starting points of fixed-input chains ``u [N, d_E]`` over ``y [N, d_B]`` (standardised):
        moved onto the fiber of the learned projection in the ``free`` columns where the model has
        one; unchanged otherwise."""
        if not self.learned_projection:
            return u
        mask = torch.zeros(u.shape[1], dtype=torch.bool, device=u.device)
        mask[free] = True

        def masked(v: Tensor) -> Tensor:
            return self.projection_std(torch.where(mask, v, v.detach()))

        with torch.enable_grad():
            moved = project_to_level_set(u, y, masked, steps=10)
        return torch.where(torch.isfinite(moved), moved, u)

    # ----------------------------------------------------------------- densities
    def density_std(self, u: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """log p(u | y) ``[N]`` of standardised total points ``u [N, d_E]`` over standardised base
        points ``y [N, d_B]`` (:meth:`standardize`, ``base_scaler``), for models with a density."""
        raise InputError(f"{type(self).__name__} has no density; log_prob and fixed= need bundlenet, cflow or cfm")

    @torch.no_grad()
    def log_prob(self, total: object, base: object, units: Units = "original", seed: int = 0) -> Tensor:
        """log p(x | y) ``[N]`` of points ``total [N, d_E]`` over ``base [N, d_B]`` (or one base
        point for all), per unit volume of the data's ``units``: the model's density of the
        standardised space (:meth:`density_std`) plus the log-Jacobians of the column maps
        (support maps, the standardisation, and for ``original`` the file's scaling) of the
        continuous columns. Discrete columns and point masses count the density of their
        dequantized cell at its centre (a probability per cell width, not a density in x).
        What is exact per model: docs/python.md."""
        if not self.has_density:
            raise InputError(f"{type(self).__name__} has no density; log_prob and fixed= need bundlenet, cflow or cfm")
        scaled = self.check_total(total, units)
        y = self.check_base(base, units)
        if y.shape[0] == 1:
            y = y.expand(scaled.shape[0], -1)
        if y.shape[0] != scaled.shape[0]:
            raise InputError(f"log_prob needs one base point, or one per point; got {y.shape[0]} for {scaled.shape[0]} points")
        gen = torch.Generator(device=scaled.device).manual_seed(int(seed))
        out = []
        continuous = self.columns.num_values == 0 if self.columns.active else torch.ones(self.spec.total_dim, dtype=torch.bool)
        scales = scaled.new_zeros(self.spec.total_dim)
        if units == "original" and self.spec.total_scale is not None:
            scales = torch.tensor(self.spec.total_scale, dtype=scaled.dtype, device=scaled.device).log()
        for xs, ys in zip(scaled.split(4096), y.split(4096)):
            pushed = torch.func.jvp(lambda v: self.standardize(v, dequantize=False), (xs,), (torch.ones_like(xs),))
            u, diag = pushed[0], pushed[1]  # the maps act per column: the tangent of ones is the Jacobian's diagonal
            # a value where its column's map is flat (a point mass) is a cell, as a discrete value is
            counted = continuous.to(xs.device) & (diag != 0)
            log_jac = torch.where(counted, diag.abs().log() - scales, 0.0).sum(1)
            out.append(self.density_std(u, self.base_scaler(ys), gen) + log_jac)
        return torch.cat(out)

    # ----------------------------------------------------------------- validation
    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        """``batch = (base [P, d_B], true fibers [P, n, d_E], W2 floor [P], each fiber point's own
        base [P, n, d_B])`` in scaled units (the last is optional: ``base`` repeated)."""
        base, fibers, floor = batch[0], batch[1], batch[2]
        own = batch[3] if len(batch) > 3 else base.unsqueeze(1).expand(-1, fibers.shape[1], -1)
        gen = self._generate_eval(base.repeat_interleave(fibers.shape[1], dim=0), self._generator(batch_idx, None))
        gen, fibers = gen.reshape(fibers.shape).float().cpu(), fibers.float().cpu()
        w2 = wasserstein(gen, fibers)
        ratio = (w2 / floor.float().cpu()).mean()
        self.log("val/fiber_w2", w2.mean(), prog_bar=True, batch_size=base.shape[0], sync_dist=True)
        self.log("val/fiber_w2_ratio", ratio, prog_bar=True, batch_size=base.shape[0], sync_dist=True)
        # precision and coverage against the validation fiber sample (nearest of its points; the
        # final evaluation measures them against the exact fiber)
        nearest = torch.cdist(gen, fibers)
        self.log("val/fiber_precision", nearest.min(dim=2).values.mean(), batch_size=base.shape[0], sync_dist=True)
        self.log("val/fiber_coverage", nearest.min(dim=1).values.mean(), batch_size=base.shape[0], sync_dist=True)
        score = self.selection_score(batch[1], own)
        self.log("val/selection", w2.mean() if score is None else score, batch_size=base.shape[0], sync_dist=True)

    def selection_score(self, fibers: Tensor, bases: Tensor) -> Tensor | None:
        """The held-out criterion that picks ``best.ckpt`` (logged as ``val/selection``, lower is
        better) from validation points ``fibers [P, n, d_E]``, each over its own base point
        ``bases [P, n, d_B]`` (scaled units; a table's "nearest" fibers hold rows of nearby base
        values). ``None`` (the default) selects by the fiber W2; models with a held-out likelihood
        (BundleNet, the conditional flow) return the validation points' negative log-likelihood,
        whose noise between checks is far below that of a W2 on a few fibers."""
        return None

    @property
    def selects_by_likelihood(self) -> bool:
        """Whether ``val/selection`` is a held-out negative log-likelihood (the model overrides
        :meth:`selection_score`), a criterion steady enough to choose the reported model by
        (``final_model=auto``), rather than the W2 of a few validation fibers."""
        return type(self).selection_score is not BundleModel.selection_score

    def held_out_selection(self, batches: Iterable[tuple[Tensor, ...]]) -> float:
        """``val/selection`` of the current weights over validation ``batches`` (as
        :meth:`validation_step` takes them), the mean over their base points as Lightning logs
        it; for models that :attr:`selects_by_likelihood` (the others' W2 draws samples)."""
        total, count = 0.0, 0
        training = self.training
        self.eval()
        try:
            for batch in batches:
                base, fibers = (t.to(self.device) for t in batch[:2])
                own = batch[3].to(self.device) if len(batch) > 3 else base.unsqueeze(1).expand(-1, fibers.shape[1], -1)
                score = self.selection_score(fibers, own)
                if score is None:
                    raise TypeError(f"{type(self).__name__} has no held-out likelihood (selection_score is None)")
                total, count = total + float(score) * base.shape[0], count + base.shape[0]
        finally:
            self.train(training)
        return total / max(count, 1)

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise InputError(
                "no optimizer configured: pass optimizer=functools.partial(torch.optim.Adam, lr=...) (model.optimizer)"
            )
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from bundlenet import __version__

        checkpoint["bundlenet"] = {"version": __version__, "model": f"{type(self).__module__}.{type(self).__qualname__}"}
        if self.data_hash is not None:
            checkpoint["bundlenet"]["data_hash"] = self.data_hash
        if self.data_config is not None:
            checkpoint["bundlenet"]["data"] = self.data_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming (``trainer.fit(ckpt_path=...)``) into a model already fitted to data: refuse a
        checkpoint of other training data or of another model shape, naming what differs."""
        if self.data_hash is None:  # loading to sample or evaluate: nothing to compare against
            return
        saved = checkpoint.get("bundlenet", {})
        if saved.get("data_hash") not in (None, self.data_hash):
            raise InputError(
                "the checkpoint was trained on other data (the training rows differ: a changed data file, "
                "data option or seed); resume with the same data, or start a new run"
            )
        old = checkpoint.get("hyper_parameters", {})
        changed = [
            f"model.{k}={old[k]!r} in the checkpoint, {v!r} now"
            for k, v in self.hparams.items()
            if k in old and k != "spec" and not callable(v) and old[k] != v
        ]
        shapes = {k: tuple(v.shape) for k, v in checkpoint.get("state_dict", {}).items()}
        # state that a loader fills in when an older checkpoint lacks it (_FILLED_IN)
        mine = {k: tuple(v.shape) for k, v in self.state_dict().items() if k in shapes or not k.endswith(_FILLED_IN)}
        if shapes and shapes != mine:
            detail = "; ".join(changed) or "its parameters have other shapes"
            raise InputError(f"the checkpoint is a different model ({detail}); resume with the checkpoint's model options")


def data_hash(total: Tensor, base: Tensor) -> str:
    """A short content hash of training points (order included): resuming checks it."""
    digest = hashlib.sha256()
    for t in (total, base):
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
