"""The evaluation protocol of DESIGN §6, one implementation for every model.

``python -m bundlenet.evaluate ckpt_path=PATH [data=NAME] [evaluation.iterations=10 ...]`` prints
a table of every metric's mean and 95% bootstrap CI over iterations beside the noise floor, and
writes ``evaluation.json``. The true bundle comes from the data config recorded in the
checkpoint by ``train.py`` (or from ``data=`` for checkpoints without one).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from torch import Tensor
from omegaconf import DictConfig, OmegaConf
from scipy.stats import bootstrap

from bundlenet.bundles.base import Bundle
from bundlenet.cli import run_cli, user_error
from bundlenet.errors import InputError
from bundlenet.io import write_json
from bundlenet.metrics import CloudMetrics, cloud_metrics
from bundlenet.models.base import BundleModel

log = logging.getLogger("bundlenet.evaluate")

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
        global_ot_points: W1/W2 of the global clouds use their first ``global_ot_points`` points
            (``None``: all); exact OT on 4000 points costs seconds per solve.
        seed: seed of the true samples and of the model's samples.
        confidence: level of the bootstrap CIs.
    """

    iterations: int = 10
    num_global: int = 4000
    num_fibers: int = 15
    num_points: int = 200
    global_ot_points: int | None = 1000
    seed: int = 12345
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("iterations", "num_global", "num_fibers", "num_points"):
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
        values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
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
        ci = bootstrap((finite,), np.mean, confidence_level=confidence, n_resamples=2000, method="percentile",
                       random_state=np.random.default_rng(seed)).confidence_interval
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
            "protocol": {**asdict(self.protocol), "w1_w2": "exact OT (POT emd2, numItermax 1e7)",
                         "mmd": "gaussian kernel, blur 0.5 (geomloss convention)",
                         "kl": "1-NN estimator (Wang, Kulkarni & Verdu 2009)", "ci": "percentile bootstrap over iterations"},
            "global": {name: r.to_dict() for name, r in self.global_metrics.items()},
            "fiber": ({name: r.to_dict() for name, r in self.fiber_metrics.items()}
                      if self.fiber_metrics is not None else _NOT_APPLICABLE),
            "seconds": round(self.seconds, 1),
            "iterations": {scope: {who: {m: [None if not math.isfinite(v) else v for v in vs] for m, vs in d.items()}
                                   for who, d in by.items()} for scope, by in self.iterations.items()},
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
            has_ratio=not name.startswith("kl"),
        )
        for name in METRICS
    }


def _record(store: dict[str, list[float]], metrics: CloudMetrics) -> None:
    """Append each metric, averaged over a batch of clouds (NaN-safe), to ``store``."""
    for name, value in metrics.items().items():
        store[name].append(float(torch.nanmean(value.double())))


def evaluate_model(model: BundleModel, bundle: Bundle, protocol: Protocol | None = None) -> Evaluation:
    """Run the protocol: global and fiber-wise metrics of ``model`` against ``bundle``.

    Each iteration draws ``num_global`` true points twice (the second sample gives the noise
    floor) and ``num_global`` model samples (base points drawn like the training data), then
    ``num_fibers`` base points like the data, and over each ``num_points`` true fiber points
    twice and ``num_points`` model fiber points; fiber metrics are averaged over fibers.
    Unconditional models (``model.conditional`` false) get global metrics only. Clouds are
    compared in the model's scaled units (``spec.to_scaled``: [0, 10] per column for the UCI
    tables, as the authors; the identity for synthetic bundles), so no column dominates.
    """
    protocol = protocol or Protocol()
    if model.spec != bundle.spec:
        raise InputError(
            f"the model was trained on data {model.spec} but the evaluation data is {bundle.spec} "
            f"({type(bundle).__name__}); pass the data= the model was trained on"
        )
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(protocol.seed)
    model_gen = torch.Generator(device=model.device).manual_seed(protocol.seed + 1)
    fresh = lambda: {who: {m: [] for m in METRICS} for who in ("model", "noise_floor")}  # noqa: E731
    values = {"global": fresh(), "fiber": fresh()}
    def scaled(points: Tensor) -> Tensor:
        return model.spec.to_scaled(points.cpu().to(model.dtype), "total")

    for it in range(protocol.iterations):
        true = scaled(bundle.sample_total(protocol.num_global, gen).total)
        other = scaled(bundle.sample_total(protocol.num_global, gen).total)
        fake = scaled(model.sample(protocol.num_global, generator=model_gen))
        _record(values["global"]["model"], cloud_metrics(true, fake, protocol.ot_points))
        _record(values["global"]["noise_floor"], cloud_metrics(true, other, protocol.ot_points))
        if model.conditional:
            base = bundle.sample_total(protocol.num_fibers, gen).base
            true_f = scaled(bundle.sample_fiber(base, protocol.num_points, gen))
            other_f = scaled(bundle.sample_fiber(base, protocol.num_points, gen))
            fake_f = scaled(model.sample_fiber(base, protocol.num_points, generator=model_gen))
            _record(values["fiber"]["model"], cloud_metrics(true_f, fake_f))
            _record(values["fiber"]["noise_floor"], cloud_metrics(true_f, other_f))
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


def bundle_from_data_config(data: DictConfig | dict[str, Any]) -> Bundle:
    """The bundle of a data config (a datamodule config with a ``bundle``, as in ``conf/data``)."""
    node = data if isinstance(data, DictConfig) else OmegaConf.create(data)
    try:
        datamodule = hydra.utils.instantiate(node)
    except Exception as err:
        cause = user_error(err)
        if cause is not None:
            raise cause from None
        raise InputError(f"cannot build the data of this evaluation ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                         f"pass data=<name> from conf/data") from None
    bundle = getattr(datamodule, "bundle", datamodule)
    if not isinstance(bundle, Bundle):
        raise InputError(f"the data config builds {type(bundle).__name__}, not a bundle; pass data=<name> from conf/data")
    return bundle


def evaluate(cfg: DictConfig) -> Evaluation:
    """The evaluate command: load, evaluate, print the table, write the JSON."""
    from bundlenet.checkpoint import load_model

    protocol = Protocol.from_config(cfg.evaluation)
    model = load_model(cfg.ckpt_path, map_location=cfg.device)
    if cfg.get("data") is not None:
        bundle = bundle_from_data_config(cfg.data)
    elif model.data_config is not None:
        bundle = bundle_from_data_config(model.data_config)
    else:
        raise InputError(f"checkpoint {cfg.ckpt_path} does not record its data; pass data=<name> (one of conf/data)")
    log.info("evaluating %s on %s: %d iterations, %d global points, %d fibers x %d points",
             type(model).__name__, type(bundle).__name__, protocol.iterations, protocol.num_global,
             protocol.num_fibers, protocol.num_points)
    result = evaluate_model(model, bundle, protocol)
    payload = {"checkpoint": str(cfg.ckpt_path), "bundle": type(bundle).__name__, **result.to_dict()}
    write_json(Path(cfg.output), payload)
    sys.stdout.write(result.table() + "\n")
    ot = protocol.ot_points
    if ot is not None:
        sys.stdout.write(f"global W1/W2 on the first {ot} of {protocol.num_global} points (exact OT); other metrics on all points" + "\n")
    sys.stdout.write(f"evaluated in {result.seconds:.1f} s; wrote {cfg.output}" + "\n")
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_cli(evaluate, cfg)


if __name__ == "__main__":
    main()
