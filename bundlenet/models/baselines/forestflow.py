"""Forest-Flow: flow matching whose velocity is a gradient-boosted forest per noise level
(the ``ForestDiffusion`` package, an optional extra: ``pip install 'bundlenet[forest]'``)."""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bundlenet.bundles.base import BundleSpec
from bundlenet.errors import InputError
from bundlenet.models.base import BundleModel, OptimizerFactory, SchedulerFactory

log = logging.getLogger(__name__)

INSTALL = (
    "model=forestflow needs the optional ForestDiffusion package: pip install 'bundlenet[forest]' "
    "(in a source checkout: pip install -e '.[forest]')"
)


def _import(name: str) -> Any:
    """``ForestDiffusion`` or ``xgboost``, or a one-line :class:`InputError` naming the extra."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise InputError(INSTALL) from None


class ForestVelocity(nn.Module):
    r"""The fitted forests of Forest-Flow, held as buffers so that a checkpoint loads with
    ``weights_only``: for each of the L noise levels one XGBoost booster ``booster_i`` (its
    UBJSON bytes, ``uint8 [n_i]``) predicting the velocity of all d columns at once, and the
    min-max scaling ``x̃ = offset + scale · x`` onto [−1, 1] with each column's training range
    ``[low, high]`` (``float64 [d]`` each).

    :meth:`sample` integrates :math:`\dot x = v_i(x, c)`, i = round(t (L − 1)), from
    :math:`x_0 \sim N(0, I)` at t = 0 by L − 1 Euler steps of size 1 / (L − 1) (as
    ``ForestDiffusionModel.generate`` does), then undoes the scaling and clips each column to
    its range. Shapes: ``x0 [N, d]``, conditions ``c [N, d_c]`` → ``[N, d]`` (float64).
    """

    low: Tensor
    high: Tensor
    offset: Tensor
    scale: Tensor

    def __init__(self, dim: int, levels: int) -> None:
        super().__init__()
        self.levels = int(levels)
        for name in ("offset", "scale", "low", "high"):
            self.register_buffer(name, torch.zeros(dim, dtype=torch.float64))
        for i in range(self.levels):
            self.register_buffer(f"booster_{i}", torch.zeros(0, dtype=torch.uint8))
        self._boosters: list[Any] | None = None

    @property
    def fitted(self) -> bool:
        return bool(self.get_buffer("booster_0").numel())

    def fit(self, x: Tensor, condition: Tensor, **options: Any) -> None:
        """Fit ``ForestDiffusionModel(X=x, X_covs=condition, n_t=levels, **options)`` (``x [N, d]``,
        ``condition [N, d_c]``) and keep its boosters and scaling; numpy's global random state
        (which the package reseeds) is restored afterwards."""
        package = _import("ForestDiffusion")
        state = np.random.get_state()
        try:
            fitted = package.ForestDiffusionModel(
                X=x.detach().cpu().double().numpy(),
                X_covs=condition.detach().cpu().double().numpy(),
                n_t=self.levels,
                diffusion_type="flow",
                model="xgboost",
                **options,
            )
        finally:
            np.random.set_state(state)
        self.take(fitted)

    def take(self, model: Any) -> None:
        """Keep the boosters and scaling of a fitted ``ForestDiffusionModel`` (flow, one class,
        no categorical columns, no missing values)."""
        boosters = model.regr[0]  # one class (no label_y); one multi-output booster per level (p_in_one)
        for i, booster in enumerate(boosters):
            setattr(self, f"booster_{i}", torch.frombuffer(bytearray(booster.save_raw("ubj")), dtype=torch.uint8).clone())
        for name, value in (("offset", model.scaler.min_), ("scale", model.scaler.scale_)):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float64))
        self.low.copy_(torch.as_tensor(np.ravel(model.X_min), dtype=torch.float64))
        self.high.copy_(torch.as_tensor(np.ravel(model.X_max), dtype=torch.float64))
        self._boosters = list(boosters)

    def boosters(self) -> list[Any]:
        if not self.fitted:
            raise InputError("this Forest-Flow model has not been fitted: train it first (python train.py model=forestflow)")
        if self._boosters is None:
            xgboost = _import("xgboost")
            self._boosters = []
            for i in range(self.levels):
                booster = xgboost.Booster()
                booster.load_model(bytearray(getattr(self, f"booster_{i}").cpu().numpy().tobytes()))
                booster.set_param({"nthread": torch.get_num_threads()})
                self._boosters.append(booster)
        return self._boosters

    def velocity(self, level: int, x: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """The forest of ``level`` at ``x [N, d]`` given ``condition [N, d_c]``: ``[N, d]``."""
        booster = self.boosters()[level]  # first: an unfitted model says so, with or without the extra
        out = booster.predict(_import("xgboost").DMatrix(np.concatenate([x, condition], axis=1)))
        return np.asarray(out, dtype=np.float64).reshape(x.shape)

    def sample(self, x0: Tensor, condition: Tensor) -> Tensor:
        x, c = x0.detach().cpu().double().numpy(), condition.detach().cpu().double().numpy()
        h, t = 1.0 / (self.levels - 1), 0.0
        for _ in range(self.levels - 1):
            x = x + h * self.velocity(round(t * (self.levels - 1)), x, c)
            t += h
        out = (torch.from_numpy(x) - self.offset.cpu()) / self.scale.cpu()
        return torch.minimum(torch.maximum(out, self.low.cpu()), self.high.cpu())

    def resize_like(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Give the booster buffers the sizes of ``state_dict``'s (they are empty until fitted)."""
        for i in range(self.levels):
            key = f"{prefix}booster_{i}"
            if isinstance(state_dict.get(key), Tensor):
                setattr(self, f"booster_{i}", torch.empty_like(state_dict[key], device=self.offset.device))
        self._boosters = None

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        self.resize_like(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ForestFlow(BundleModel):
    r"""Forest-Flow (Jolicoeur-Martineau, Fatras and Kachman, *Generating and Imputing Tabular
    Data via Diffusion and Flow-based Gradient-Boosted Trees*, AISTATS 2024) of the fibers:
    :math:`p(x \mid y)` by flow matching with XGBoost, through ``ForestDiffusion``'s own
    training at its defaults.

    With :math:`\tilde x \in [-1, 1]^d` the min-max scaled x (scaled units) and :math:`\hat y` the
    standardised y as covariates (``X_covs``), each training row is repeated ``duplicate_K``
    times with noise :math:`x_0 \sim N(0, I)`, and for each of ``n_t`` levels
    :math:`t_i \in [10^{-3}, 1]` a boosted forest (``n_estimators`` rounds of trees of depth ``max_depth``,
    rate ``eta``; XGBoost grows one tree per column in each round) regresses :math:`\tilde x - x_0` on :math:`(t_i \tilde x + (1 - t_i) x_0, \hat y)`.
    Sampling is :class:`ForestVelocity`'s Euler integration; every sample lies in the training
    range of each column.

    The forests are fitted in the first training step on every training row (gradient descent
    plays no part) and the run then stops after one validation: its one model is ``last.ckpt``
    (no ``best.ckpt``: there is nothing to choose among), and it counts no optimizer steps.
    Samples are not snapped to a column's discrete values. There is no density and no
    learned projection (re-simulation uses the fitted :class:`~bundlenet.nn.resimulator.Resimulator`).
    """

    def __init__(
        self,
        spec: BundleSpec | dict[str, Any],
        n_t: int = 50,
        duplicate_K: int = 100,
        n_estimators: int = 100,
        max_depth: int = 7,
        eta: float = 0.3,
        n_jobs: int = 1,
        forest_seed: int = 666,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(spec, optimizer, scheduler)
        for name, value, least in (("n_t", n_t, 2), ("duplicate_K", duplicate_K, 1), ("n_estimators", n_estimators, 1)):
            if not isinstance(value, int) or value < least:
                raise InputError(f"model.{name} must be an integer of at least {least}, got {value!r}")
        self.save_options()
        self.automatic_optimization = False
        self.forest = ForestVelocity(self.spec.total_dim, n_t)

    def fit_extra(self, total: Tensor, base: Tensor) -> None:
        _import("ForestDiffusion")  # before the run writes anything: a missing extra costs one line

    def forest_options(self) -> dict[str, Any]:
        """``ForestDiffusionModel``'s options; XGBoost gets torch's thread count (``nthread``),
        which ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` set, instead of every core."""
        names = ("duplicate_K", "n_estimators", "max_depth", "eta", "n_jobs")
        options = {k: self.hparams[k] for k in names}
        return {**options, "seed": int(self.hparams["forest_seed"]), "nthread": torch.get_num_threads()}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        if not self.forest.fitted:
            total, base = self.trainer.datamodule.train_tensors()  # type: ignore[attr-defined]  # set by Lightning
            options = self.forest_options()
            log.info(
                "Forest-Flow: fitting %d forests (%d rounds of a depth-%d tree per column) on %d rows "
                "(%d training rows x duplicate_K=%d), %d thread(s)",
                self.forest.levels,
                options["n_estimators"],
                options["max_depth"],
                total.shape[0] * options["duplicate_K"],
                total.shape[0],
                options["duplicate_K"],
                options["nthread"],
            )
            start = time.perf_counter()
            self.forest.fit(total, self.base_scaler(base), **options)
            log.info("Forest-Flow: fitted in %.0f s", time.perf_counter() - start)
        self.trainer.should_stop = True  # nothing more to train: validate once and stop

    def configure_optimizers(self) -> Any:
        return []  # no parameters: the forests are fitted in one step

    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x0 = torch.randn(base.shape[0], self.spec.total_dim, generator=generator, device=base.device, dtype=torch.float64)
        return self.forest.sample(x0, self.base_scaler(base)).to(base.device, base.dtype)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.forest.resize_like(checkpoint.get("state_dict", {}), "forest.")
        super().on_load_checkpoint(checkpoint)
