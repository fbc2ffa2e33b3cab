"""The evaluation protocol, one implementation for every model.

:func:`evaluate_model` compares a model's samples with exact (or empirical) samples of the true
bundle and returns every metric's mean and 95% bootstrap CI over iterations beside its noise
floor. ``train.py`` runs it after training; ``python -m bundlenet.evaluate`` runs it on a
checkpoint (:mod:`bundlenet.cli.evaluate`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from scipy.stats import bootstrap
from torch import Tensor

from bundlenet.bundles.base import Bundle
from bundlenet.errors import BundleNetError, InputError, user_error
from bundlenet.evaluation.metrics import METRICS as METRICS_DECLARED
from bundlenet.evaluation.metrics import CloudMetrics, cloud_metrics
from bundlenet.geometry import mean_nearest_distance
from bundlenet.models.base import BundleModel

log = logging.getLogger("bundlenet.evaluation.protocol")

METRICS = CloudMetrics.names()
_NOT_APPLICABLE = "not applicable: the model is unconditional and cannot sample a fiber"


@dataclass(frozen=True)
class Protocol:
    """Sizes of the evaluation (defaults: the authors').

    Attributes:
        iterations: independent repetitions; CIs are over these.
        num_global: true and generated points of each global comparison.
        num_fibers: fibers per iteration (metrics averaged over fibers within an iteration).
        num_points: points per fiber, true and generated.
        coverage_points: points of the dense true fiber sample behind the coverage metric.
        global_ot_points: W1/W2 of the global clouds use their first ``global_ot_points`` points
            (``None``: all); exact OT on 4000 points costs seconds per solve.
        seed: seed of the true samples and of the model's samples.
        confidence: level of the bootstrap CIs.
    """

    iterations: int = 10
    num_global: int = 4000
    num_fibers: int = 15
    num_points: int = 200
    coverage_points: int = 2000
    global_ot_points: int | None = 1000
    seed: int = 12345
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("iterations", "num_global", "num_fibers", "num_points", "coverage_points"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (2 if name.startswith("num") else 1):
                least = 2 if name.startswith("num") else 1
                raise InputError(f"evaluation.{name} must be an integer >= {least}, got {value!r}")
        if self.global_ot_points is not None and (not isinstance(self.global_ot_points, int) or self.global_ot_points < 2):
            raise InputError(f"evaluation.global_ot_points must be an integer >= 2 or null, got {self.global_ot_points!r}")
        if not 0 < self.confidence < 1:
            raise InputError(f"evaluation.confidence must be in (0, 1), got {self.confidence}")

    @classmethod
    def from_config(cls, cfg: DictConfig | dict[str, Any]) -> Protocol:
        """The protocol from a config node; keys that are not protocol sizes are ignored."""
        values = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)) if isinstance(cfg, DictConfig) else dict(cfg)
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        return cls(**known)

    @property
    def ot_points(self) -> int | None:
        """Points used by global W1/W2 (``None`` when all ``num_global`` are)."""
        if self.global_ot_points is None or self.global_ot_points >= self.num_global:
            return None
        return self.global_ot_points


@dataclass(frozen=True)
class Estimate:
    """A mean over iterations with its bootstrap confidence interval (``None`` if undefined)."""

    mean: float
    low: float | None
    high: float | None

    @classmethod
    def of(cls, values: Sequence[float], confidence: float = 0.95, seed: int = 0) -> Estimate:
        """Mean and percentile-bootstrap CI of the finite ``values``."""
        finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
        if finite.size == 0:
            return cls(float("nan"), None, None)
        mean = float(finite.mean())
        if finite.size < 2:
            return cls(mean, None, None)
        if np.ptp(finite) == 0:
            return cls(mean, mean, mean)
        ci = bootstrap(
            (finite,),
            np.mean,
            confidence_level=confidence,
            n_resamples=2000,
            method="percentile",
            random_state=np.random.default_rng(seed),
        ).confidence_interval
        return cls(mean, float(ci.low), float(ci.high))

    def format(self, digits: int = 4) -> str:
        if not math.isfinite(self.mean):
            return "nan"
        text = f"{self.mean:.{digits}g}"
        if self.low is None or self.high is None:
            return text
        return f"{text} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


@dataclass(frozen=True)
class MetricResult:
    """A metric of the model beside the same metric between two true samples (the noise floor)."""

    model: Estimate
    noise_floor: Estimate
    has_ratio: bool = True

    @property
    def ratio(self) -> float | None:
        """Model mean / noise-floor mean; ``None`` for metrics whose floor is ≈ 0 by definition
        (the KL estimates, which can also be negative) or where the floor is not positive."""
        floor = self.noise_floor.mean
        if not (self.has_ratio and math.isfinite(floor) and floor > 0 and math.isfinite(self.model.mean)):
            return None
        return self.model.mean / floor

    def to_dict(self) -> dict[str, Any]:
        return {"model": _finite(asdict(self.model)), "noise_floor": _finite(asdict(self.noise_floor)), "ratio": self.ratio}


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """NaN → None so the JSON stays standard."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass(frozen=True)
class Evaluation:
    """The protocol's result for one model.

    Attributes:
        model: class name of the model.
        protocol: the sizes used.
        global_metrics: metric name → result, global clouds.
        fiber_metrics: metric name → result, fiber-wise; ``None`` when not applicable.
        seconds: wall time of the evaluation.
        iterations: raw per-iteration values, ``{scope: {"model"|"noise_floor": {metric: [..]}}}``.
    """

    model: str
    protocol: Protocol
    global_metrics: dict[str, MetricResult]
    fiber_metrics: dict[str, MetricResult] | None
    seconds: float
    iterations: dict[str, dict[str, dict[str, list[float]]]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "protocol": {
                **asdict(self.protocol),
                "w1_w2": "exact OT (POT emd2, numItermax 1e7)",
                "mmd": "gaussian kernel, blur 0.5 (geomloss convention)",
                "kl": "1-NN estimator (Wang, Kulkarni & Verdu 2009)",
                "ci": "percentile bootstrap over iterations",
            },
            "global": {name: r.to_dict() for name, r in self.global_metrics.items()},
            "fiber": (
                {name: r.to_dict() for name, r in self.fiber_metrics.items()}
                if self.fiber_metrics is not None
                else _NOT_APPLICABLE
            ),
            "seconds": round(self.seconds, 1),
            "iterations": {
                scope: {
                    who: {m: [None if not math.isfinite(v) else v for v in vs] for m, vs in d.items()} for who, d in by.items()
                }
                for scope, by in self.iterations.items()
            },
        }

    def table(self) -> str:
        """A plain-text table: scope, metric, model mean [CI], noise floor mean [CI], ratio."""
        header = ("scope", "metric", "model mean [95% CI]", "noise floor mean [95% CI]", "ratio")
        rows: list[tuple[str, ...]] = [header]
        for scope, results in (("global", self.global_metrics), ("fiber", self.fiber_metrics)):
            if results is None:
                rows.append((scope, "all", "n/a (unconditional model)", "", ""))
                continue
            for name, r in results.items():
                ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
                rows.append((scope, name, r.model.format(), r.noise_floor.format(), ratio))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _summarise(values: dict[str, dict[str, list[float]]], protocol: Protocol) -> dict[str, MetricResult]:
    return {
        name: MetricResult(
            Estimate.of(values["model"][name], protocol.confidence, protocol.seed),
            Estimate.of(values["noise_floor"][name], protocol.confidence, protocol.seed),
            has_ratio=METRICS_DECLARED[name].ratio,
        )
        for name in values["model"]
    }


def _record(store: dict[str, list[float]], metrics: dict[str, Tensor]) -> None:
    """Append each metric, averaged over a batch of clouds (NaN-safe), to ``store``."""
    for name, value in metrics.items():
        store.setdefault(name, []).append(float(torch.nanmean(value.double())))


def fiber_shape_metrics(
    bundle: Bundle, base: Tensor, generated: Tensor, dense: Tensor, reference: Tensor | None = None
) -> dict[str, Tensor]:
    """Precision and coverage of generated fibers, in scaled units: ``[B]`` each.

    * ``precision``: mean distance from each generated point ``generated [B, n, d_E]`` to the
      true fiber over ``base [B, d_B]`` (:meth:`Bundle.distance_to_fiber`); 0 is perfect.
    * ``coverage``: mean distance from each point of a dense true fiber sample ``dense [B, m, d_E]``
      to the nearest generated point; large where part of the fiber is not drawn.
    * ``resimulation``: where the bundle's map π is known (:attr:`Bundle.exact_map`), the mean
      re-simulation error ‖π(x̂) − y‖ of the generated points, in the units of the base.
    * the bundle's own scores (:meth:`Bundle.fiber_scores`, e.g. a classifier's accuracy on
      images of digits), against the true fiber sample ``reference [B, n, d_E]`` where they
      compare with one.
    """
    metrics = {
        "precision": bundle.distance_to_fiber(generated, base, units="scaled").mean(-1),
        "coverage": mean_nearest_distance(dense, generated),
    }
    if bundle.exact_map:
        metrics["resimulation"] = (bundle.project(generated) - base.unsqueeze(1).to(generated)).norm(dim=-1).mean(-1)
    return {**metrics, **bundle.fiber_scores(generated, base, units="scaled", reference=reference)}


def evaluate_model(model: BundleModel, bundle: Bundle, protocol: Protocol | None = None) -> Evaluation:
    """Run the protocol: global and fiber-wise metrics of ``model`` against ``bundle``.

    Each iteration draws ``num_global`` true points twice (the second sample gives the noise
    floor) and ``num_global`` model samples (base points drawn like the training data), then
    ``num_fibers`` base points like the data, and over each ``num_points`` true fiber points
    twice (the second from :meth:`Bundle.sample_fiber_floor`), ``num_points`` model fiber points
    and ``coverage_points`` dense true points; fiber metrics are averaged over fibers. Fiber precision and coverage (:func:`fiber_shape_metrics`)
    are measured for the model and, as their floor, for the second true sample. Unconditional
    models (``model.conditional`` false) get global metrics only. Clouds are compared in the
    model's scaled units (``spec.to_scaled``: [0, 10] per column for the UCI tables, as the
    authors; the identity for synthetic bundles), so no column dominates.
    """
    protocol = protocol or Protocol()
    units = _evaluation_units(model, bundle)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(protocol.seed)
    model_gen = torch.Generator(device=model.device).manual_seed(protocol.seed + 1)
    values: dict[str, dict[str, dict[str, list[float]]]] = {
        scope: {"model": {}, "noise_floor": {}} for scope in ("global", "fiber")
    }

    def scaled(points: Tensor, part: Literal["base", "total"] = "total") -> Tensor:
        points = points.cpu().to(model.dtype)
        return points if units == "original" else model.spec.to_scaled(points, part)

    def record(scope: str, true: Tensor, generated: Tensor, other: Tensor, **extra: dict[str, Tensor]) -> None:
        check_finite(generated, scope)
        for who, cloud in (("model", generated), ("noise_floor", other)):
            metrics = cloud_metrics(true, cloud, protocol.ot_points if scope == "global" else None).items()
            metrics.update(extra[who] if extra else {})
            support = model.spec.support_share(cloud if units == "original" else model.spec.to_original(cloud, "total"))
            if support is not None:
                metrics["support"] = support
            _record(values[scope][who], metrics)

    for it in range(protocol.iterations):
        _iteration(model, bundle, protocol, (gen, model_gen), scaled, record)
        log.info("evaluation iteration %d/%d done (%.1f s)", it + 1, protocol.iterations, time.perf_counter() - start)
    if not model.conditional:
        del values["fiber"]
    return Evaluation(
        model=type(model).__name__,
        protocol=protocol,
        global_metrics=_summarise(values["global"], protocol),
        fiber_metrics=_summarise(values["fiber"], protocol) if model.conditional else None,
        seconds=time.perf_counter() - start,
        iterations=values,
    )


def _evaluation_units(model: BundleModel, bundle: Bundle) -> Literal["scaled", "original"]:
    """The units the clouds are compared in: the model's scaled units, or the bundle's own for a
    model trained on a table of a synthetic bundle's samples (``data=csv``); an
    :class:`InputError` where the model's columns are not the bundle's."""
    if (
        model.spec.source is None
        and bundle.spec.source is not None
        and bundle.spec.unscaled
        and model.spec.same_names(bundle.spec)
    ):
        log.info("the model's data are a table of %s's columns: evaluating in the bundle's own units", type(bundle).__name__)
        return "original"
    if not model.spec.same_columns(bundle.spec):
        raise InputError(
            f"the model was trained on {_describe(model.spec)} but the evaluation data ({type(bundle).__name__}) has "
            f"{_describe(bundle.spec)}; pass the data= the model was trained on"
        )
    return "scaled"


def _iteration(
    model: BundleModel,
    bundle: Bundle,
    protocol: Protocol,
    generators: tuple[torch.Generator, torch.Generator],
    scaled: Callable[..., Tensor],
    record: Callable[..., None],
) -> None:
    """One iteration of :func:`evaluate_model`: its global clouds, then (conditional models) its
    fibers, drawn with the bundle's and the model's generators and passed to ``record``."""
    gen, model_gen = generators
    true = scaled(bundle.sample_total(protocol.num_global, gen).total)
    other = scaled(bundle.sample_total(protocol.num_global, gen).total)
    fake = scaled(cast(Tensor, model.sample(protocol.num_global, generator=model_gen)))  # without return_base
    record("global", true, fake, other)
    if not model.conditional:
        return
    base = bundle.sample_total(protocol.num_fibers, gen).base
    true_f = scaled(bundle.sample_fiber(base, protocol.num_points, gen))
    other_f = scaled(bundle.sample_fiber_floor(base, protocol.num_points, gen))
    dense = scaled(bundle.sample_fiber(base, protocol.coverage_points, gen))
    fake_f = scaled(model.sample_fiber(base, protocol.num_points, generator=model_gen))
    base_s = scaled(base, "base")
    record(
        "fiber",
        true_f,
        fake_f,
        other_f,
        model=fiber_shape_metrics(bundle, base_s, fake_f, dense, true_f),
        noise_floor=fiber_shape_metrics(bundle, base_s, other_f, dense, true_f),
    )


def _describe(spec: Any) -> str:
    """A short account of a spec for messages: its columns, source and whether it is scaled."""

    def names(columns: Sequence[str]) -> str:
        return ", ".join(columns[:6]) + (f", ... ({len(columns)} columns)" if len(columns) > 6 else "")

    source = f" from {spec.source}" if spec.source else ""
    scaled = "" if spec.unscaled else ", scaled"
    return f"columns ({names(spec.total_names)}) over ({names(spec.base_names)}){source}{scaled}"


def check_finite(samples: Tensor, scope: str) -> None:
    """Refuse to score samples with NaN or infinite values: no metric of them means anything
    (an exact-OT W2 of infinite points can even come out 0)."""
    bad = ~torch.isfinite(samples).all(dim=-1)
    if bool(bad.any()):
        raise BundleNetError(
            f"the model's {scope} samples contain non-finite values ({int(bad.sum())} of {bad.numel()} points), "
            f"so they are not scored; the model has diverged: retrain it (a lower model.optimizer.lr, or trainer.gradient_clip_val)"
        )


def bundle_from_data_config(data: DictConfig | dict[str, Any]) -> Bundle:
    """The bundle of a data config (a datamodule config with a ``bundle``, as in ``conf/data``)."""
    node = data if isinstance(data, DictConfig) else OmegaConf.create(data)
    try:
        datamodule = hydra.utils.instantiate(node)
    except Exception as err:
        cause = user_error(err)
        if cause is not None:
            raise cause from None
        raise InputError(
            f"cannot build the data of this evaluation ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            f"pass data=<name> from conf/data"
        ) from None
    bundle = getattr(datamodule, "bundle", datamodule)
    if not isinstance(bundle, Bundle):
        raise InputError(f"the data config builds {type(bundle).__name__}, not a bundle; pass data=<name> from conf/data")
    return bundle
