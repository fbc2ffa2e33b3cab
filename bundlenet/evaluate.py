"""Evaluation of a trained model against a bundle's true fibers (DESIGN §6)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from bundlenet.bundles.base import Bundle
from bundlenet.metrics import mmd, wasserstein
from bundlenet.models.base import BundleModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricSummary:
    """A metric's mean over iterations beside its noise floor (two true samples)."""

    value: float
    noise_floor: float

    @property
    def ratio(self) -> float:
        return self.value / self.noise_floor if self.noise_floor > 0 else float("inf")

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "ratio": self.ratio}


def fiber_metrics(
    model: BundleModel,
    bundle: Bundle,
    num_fibers: int = 15,
    num_points: int = 200,
    iterations: int = 3,
    seed: int = 0,
    base: Tensor | None = None,
) -> dict[str, MetricSummary]:
    """Fiber-wise W2 and MMD of the model's fibers against exact fibers, with noise floors.

    Each iteration draws ``num_fibers`` base points like the data (or uses ``base``), samples
    ``num_points`` from the model's and the true fiber over each, and averages the metric over
    fibers; the noise floor is the same metric between two independent true samples.
    """
    gen = torch.Generator().manual_seed(seed)
    values: dict[str, list[float]] = {"w2": [], "mmd": [], "w2_floor": [], "mmd_floor": []}
    for _ in range(iterations):
        points = bundle.sample_total(num_fibers, gen).base if base is None else base
        true = bundle.sample_fiber(points, num_points, gen)
        other = bundle.sample_fiber(points, num_points, gen)
        model_gen = torch.Generator(device=model.device).manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        fake = model.sample_fiber(points, num_points, generator=model_gen).cpu().to(true.dtype)
        values["w2"].append(float(wasserstein(fake, true).mean()))
        values["w2_floor"].append(float(wasserstein(other, true).mean()))
        values["mmd"].append(float(mmd(fake, true).mean()))
        values["mmd_floor"].append(float(mmd(other, true).mean()))

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    return {
        "w2": MetricSummary(mean(values["w2"]), mean(values["w2_floor"])),
        "mmd": MetricSummary(mean(values["mmd"]), mean(values["mmd_floor"])),
    }


def global_metrics(model: BundleModel, bundle: Bundle, num_points: int = 2000, seed: int = 0) -> dict[str, MetricSummary]:
    """W2 and MMD between ``num_points`` global model samples and true samples, with floors."""
    gen = torch.Generator().manual_seed(seed)
    true = bundle.sample_total(num_points, gen).total
    other = bundle.sample_total(num_points, gen).total
    model_gen = torch.Generator(device=model.device).manual_seed(seed)
    fake = model.sample(num_points, generator=model_gen).cpu().to(true.dtype)
    return {
        "w2": MetricSummary(float(wasserstein(fake, true)), float(wasserstein(other, true))),
        "mmd": MetricSummary(float(mmd(fake, true)), float(mmd(other, true))),
    }
