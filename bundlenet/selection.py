r"""The fiber's topology chosen by held-out likelihood.

With ``data.fiber_span`` or ``data.fiber_circles`` set to ``auto``, the data module's estimate
(:func:`~bundlenet.data.topology.estimate_fiber_topology`) is a *proposal* (span s, c circles).
The proposal and its neighbours,

.. math::
    (s, c),\ (s - 1, c),\ (s + 1, c),\ (s, c - 1),\ (s, c + 1) \qquad 1 ≤ s' ≤ d_E,\ 0 ≤ 2c' ≤ s',

(only in the coordinates set to ``auto``), are each trained briefly (``steps`` steps of the
configured model, on the same rows, seed and schedule shape) on a share ``1 − holdout`` of the
training rows and scored by the mean log-likelihood :math:`\bar\ell` of the other rows (the
model's exact density where it has one, in scaled units: the same for every candidate). A
neighbour replaces the proposal only if it is better by more than ``margin`` standard errors of
the paired per-row differences :math:`\ell_i' - \ell_i`, so the estimate stands unless the data
say otherwise. A neighbour that wins becomes the proposal of the next round (at most
``max_rounds``), so an estimate two steps off is reached too. The scores are logged and returned
(``metrics.json``: ``topology``).

Only models whose latent takes the fiber's shape from the data (:attr:`BundleModel.uses_topology`)
are checked; the other models ignore the topology and cost nothing here. A run shorter than
``SHORT_RUN_FACTOR`` candidates' fits (a try-out with a small ``trainer.max_steps``) keeps the
estimate unchecked.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities.seed import isolate_rng
from torch.utils.data import DataLoader, TensorDataset

from bundlenet.data.datamodule import BundleDataModule
from bundlenet.loggers import bare_trainer
from bundlenet.ranks import FirstRankLog

first_rank = FirstRankLog(__name__)  # every rank of a data-parallel run checks alike; one reports

MIN_SELECTION_ROWS = 100  # fewer training rows cannot score candidates: the estimate is kept
SHORT_RUN_FACTOR = 5  # a run of fewer than this many candidates' steps (a try-out) keeps the estimate


@dataclass(frozen=True)
class TopologyScore:
    """One candidate topology and its evidence.

    Attributes:
        span, circles: the candidate.
        log_likelihood: mean held-out log-likelihood (scaled units; higher is better).
        difference_se: standard error of the paired per-row difference to the proposal (0 for it).
        proposed: the data module's estimate.
        chosen: the one kept.
    """

    span: int
    circles: int
    log_likelihood: float
    difference_se: float
    proposed: bool
    chosen: bool = False


def neighbour_topologies(span: int, circles: int, dim: int, vary_span: bool, vary_circles: bool) -> list[tuple[int, int]]:
    """The proposal ``(span, circles)`` first, then its neighbours (module docstring) that fit in
    ``dim`` total columns, in the coordinates allowed to vary."""
    out = [(span, circles)]
    moves = [(-1, 0), (1, 0)] * vary_span + [(0, -1), (0, 1)] * vary_circles
    for ds, dc in moves:
        s, c = span + ds, circles + dc
        if 1 <= s <= dim and c >= 0 and 2 * c <= s and (s, c) not in out:
            out.append((s, c))
    return out


def choose_topology(cfg: DictConfig, datamodule: Any, ckpt_path: str | None = None) -> list[TopologyScore] | None:
    """Check the data module's estimated topology against its neighbours (module docstring) and
    set the winner on ``datamodule``; ``None`` when nothing is checked (a stated topology, a model
    that does not use it, ``topology_selection.steps=0``, too few rows). On resume the checkpoint's
    topology is kept."""
    settings = cfg.get("topology_selection") or {}
    steps = int(settings.get("steps", 0))
    if not isinstance(datamodule, BundleDataModule):
        return None
    vary_span = datamodule.fiber_span == "auto" and cfg.model.get("fiber_span") is None
    vary_circles = datamodule.fiber_circles == "auto" and cfg.model.get("num_circles") is None
    model_class = hydra.utils.get_class(str(cfg.model._target_))
    if not getattr(model_class, "uses_topology", False) or not (vary_span or vary_circles):
        return None
    if ckpt_path is not None:
        from bundlenet.checkpoint import read_checkpoint

        saved = read_checkpoint(ckpt_path).get("hyper_parameters", {}).get("spec", {})
        if isinstance(saved, dict) and "fiber_span" in saved:
            datamodule.set_fiber_topology(int(saved["fiber_span"]), int(saved.get("fiber_circles", 0)))
        return None
    rows = datamodule.train_tensors()[0].shape[0]
    if steps <= 0 or rows < MIN_SELECTION_ROWS:
        return None
    run_steps = int(cfg.trainer.get("max_steps") or -1)
    if 0 < run_steps < SHORT_RUN_FACTOR * steps:
        first_rank.info(
            "fiber topology: the estimate is kept unchecked in a run of %d steps (checked from %d: "
            "topology_selection.steps=%d per candidate)",
            run_steps,
            SHORT_RUN_FACTOR * steps,
            steps,
        )
        return None
    scored, estimate, chosen, held_out = _search(cfg, datamodule, settings, steps, vary_span, vary_circles)
    if len(scored) == 1:
        return None
    result = _rows(scored, estimate, chosen)
    datamodule.set_fiber_topology(*chosen)
    first_rank.info(
        "fiber topology chosen by held-out log-likelihood (%d steps per candidate, %d held-out rows): %s",
        steps,
        held_out,
        "; ".join(_describe(r) for r in result),
    )
    return result


def _search(
    cfg: DictConfig, datamodule: BundleDataModule, settings: Any, steps: int, vary_span: bool, vary_circles: bool
) -> tuple[dict[tuple[int, int], torch.Tensor], tuple[int, int], tuple[int, int], int]:
    """Climb from the estimate to the best neighbour until none is better (at most
    ``max_rounds`` rounds): ``(per-row scores of every candidate, estimate, choice, held-out rows)``."""
    total, base = datamodule.train_tensors()
    proposal = datamodule.spec
    assert proposal.fiber_span is not None
    holdout = float(settings.get("holdout", 0.2))
    order = torch.randperm(total.shape[0], generator=torch.Generator().manual_seed(int(cfg.get("seed") or 0)))
    cut = max(1, min(round(holdout * total.shape[0]), total.shape[0] - MIN_SELECTION_ROWS // 2))
    test, train = order[:cut], order[cut:]
    batch = min(datamodule.batching()[0], int(settings.get("batch_size", 512)))
    scored: dict[tuple[int, int], torch.Tensor] = {}
    estimate = current = (proposal.fiber_span, proposal.fiber_circles)
    with isolate_rng():  # the run itself starts from the random state it would have without the check
        for _ in range(int(settings.get("max_rounds", 3))):
            candidates = neighbour_topologies(*current, proposal.total_dim, vary_span, vary_circles)
            for span, circles in candidates:
                if (span, circles) not in scored:
                    spec = datamodule.spec_with_topology(span, circles)
                    scored[span, circles] = _fit_and_score(
                        cfg, spec, (total[train], base[train]), (total[test], base[test]), batch, steps
                    )
            winner = _better(candidates, [scored[c] for c in candidates], float(settings.get("margin", 2.0)))
            if winner == current:
                break
            current = winner
    return scored, estimate, current, cut


def _fit_and_score(
    cfg: DictConfig,
    spec: Any,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    batch: int,
    steps: int,
) -> torch.Tensor:
    """Per-row held-out log-likelihoods ``[n_test]`` of the configured model with ``spec``
    trained ``steps`` steps on ``train`` (``-inf`` where it is not finite)."""
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = hydra.utils.instantiate(cfg.model, spec=spec)
    model.fit_data(*train)
    gen = torch.Generator().manual_seed(int(cfg.get("seed") or 0))
    loader = DataLoader(TensorDataset(*train), batch_size=min(batch, train[0].shape[0]), shuffle=True, generator=gen)
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    devices: Any = [int(os.environ.get("LOCAL_RANK", 0))] if accelerator in ("gpu", "cuda") else 1
    trainer = bare_trainer(
        max_steps=steps,
        accelerator=accelerator,
        devices=devices,
        precision=cfg.trainer.get("precision", "32-true"),
        gradient_clip_val=cfg.trainer.get("gradient_clip_val") if model.automatic_optimization else None,
    )
    with _quiet_fit():
        trainer.fit(model, train_dataloaders=loader)
    model.eval()
    scores = model.log_prob(test[0].to(model.device), test[1].to(model.device), units="scaled").double().cpu()
    return torch.where(torch.isfinite(scores), scores, torch.tensor(-math.inf, dtype=scores.dtype))


@contextmanager
def _quiet_fit() -> Iterator[None]:
    """Lightning's information lines and its missing-validation notice, for a candidate's fit."""
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*validation_step.*val_dataloader.*")
            warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
            yield
    finally:
        logger.setLevel(level)


def _better(candidates: list[tuple[int, int]], scores: list[torch.Tensor], margin: float) -> tuple[int, int]:
    """The first candidate (the current choice) unless another is better by more than ``margin``
    standard errors of the paired difference (or the first's likelihood is not finite and
    another's is); then the best of those."""
    means = [float(s.mean()) for s in scores]
    if math.isfinite(means[0]):
        better = [
            i
            for i in range(1, len(scores))
            if math.isfinite(means[i]) and means[i] - means[0] > margin * _paired_se(scores[i], scores[0])
        ]
    else:
        better = [i for i in range(1, len(scores)) if math.isfinite(means[i])]
    return candidates[max(better, key=lambda i: means[i], default=0)]


def _rows(scored: dict[tuple[int, int], torch.Tensor], estimate: tuple[int, int], chosen: tuple[int, int]) -> list[TopologyScore]:
    """Every scored candidate as a :class:`TopologyScore`, the estimate first."""
    order = [estimate] + [c for c in scored if c != estimate]
    return [
        TopologyScore(
            span,
            circles,
            float(scored[span, circles].mean()),
            0.0 if (span, circles) == estimate else _paired_se(scored[span, circles], scored[estimate]),
            proposed=(span, circles) == estimate,
            chosen=(span, circles) == chosen,
        )
        for span, circles in order
    ]


def _paired_se(scores: torch.Tensor, reference: torch.Tensor) -> float:
    """Standard error of the mean of the finite per-row differences ``scores − reference``."""
    diff = scores - reference
    diff = diff[torch.isfinite(diff)]
    return float(diff.std() / math.sqrt(diff.numel())) if diff.numel() > 1 else math.inf


def _describe(row: TopologyScore) -> str:
    tags = [t for t, on in (("estimate", row.proposed), ("chosen", row.chosen)) if on]
    se = f" ± {row.difference_se:.3g}" if not row.proposed else ""
    return f"span {row.span}, {row.circles} circle(s): {row.log_likelihood:.4g}{se}" + (f" ({', '.join(tags)})" if tags else "")
