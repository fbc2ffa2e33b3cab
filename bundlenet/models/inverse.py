r"""Inverse design with any model: base points from ranges, samples with some inputs fixed,
re-simulation and refinement onto the fiber of a forward map.

**Base ranges.** ``{"col": (lo, hi)}`` draws base points from the training base points a model
keeps (:class:`~bundlenet.models.base.EmpiricalBase`, up to 100 000 rows) whose columns lie in
the ranges, uniformly with replacement: the data's own base distribution restricted to the
ranges, with no smoothing (a value absent from the training rows is never drawn).

**Fixed inputs** (:func:`sample_fixed`). With some total columns fixed to values a, the other
columns should follow :math:`p(x_\text{free} \mid x_\text{fixed} = a, y) \propto p(x_\text{free},
a \mid y)`, the model's own fiber density restricted to the slice. Chains of random-walk
Metropolis–Hastings run on the free columns in the model's standardised, unconstrained space
(per-column support maps, then one isotropic scale: the maps are per column, so the slice's
density there transforms to the data's units with the free columns' Jacobian alone, and the
chain's stationary law is exactly the model's conditional). They start from fiber samples whose
fixed columns are nearest to a (the nearest ``chains`` of ``8 × chains`` drawn per base point),
with the fixed columns set to a and, where the model has a differentiable projection, the free
columns moved onto its fiber by Gauss–Newton steps. Proposals are Gaussian with the covariance
of the chains' starting points over each base point (the directions along the fiber), scaled
during the first half of the steps towards an acceptance rate of 0.3 and then frozen; each
chain's state after ``steps`` is one sample. The method is asymptotically exact (the chains'
law converges to the model's conditional as ``steps`` grows, for any start); with a finite
number of steps the samples carry some memory of their start. Where a model's density uses a
random padding draw (BundleNet with a latent wider than the data), the density is the unbiased
importance estimate :math:`p(x, ε \mid y) / q(ε)` with a fresh ε per proposal, kept with its
state: pseudo-marginal Metropolis–Hastings, still exact.

**Refinement** (:func:`refine`). Gauss–Newton steps of minimal norm on π(x) = y
(:func:`bundlenet.geometry.project_to_level_set`), in the data's units, over the continuous
columns that are not fixed: each step moves a sample normal to the fiber of π only, so the
spread along the fiber is kept; the result is clipped to the columns' bounds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from bundlenet.errors import InputError
from bundlenet.geometry import project_to_level_set

if TYPE_CHECKING:
    from bundlenet.models.base import BundleModel

log = logging.getLogger(__name__)

TARGET_ACCEPTANCE = 0.3
POOL_FACTOR = 8  # fiber samples drawn per chain to choose the chains' starts
MIN_CHAINS = 16  # chains per base point (their spread sets the proposal's shape)


def parse_base(model: BundleModel, base: Any, num_samples: int, generator: torch.Generator | None) -> tuple[Tensor, int]:
    """User base points → ``(points [B, d_B] in original units, samples per point)``.

    ``base`` is one point (a number for one base column, a sequence of ``d_B`` numbers, or a
    mapping ``{column: number}``), a list of points, a DataFrame or array with the base columns,
    or ranges ``{column: (lo, hi)}`` (``num_samples`` base points drawn, one sample each)."""
    import pandas as pd

    names = model.spec.base_names
    if isinstance(base, pd.DataFrame):
        missing = [n for n in names if n not in base.columns]
        if missing:
            raise InputError(
                f"the base DataFrame lacks column(s) {missing}; its columns are {list(base.columns)}, expected {list(names)}"
            )
        return torch.tensor(base[list(names)].to_numpy(dtype="float64", copy=True)), num_samples
    if isinstance(base, Mapping):
        unknown = [k for k in base if k not in names]
        if unknown:
            raise InputError(f"base names {unknown}, which are not base columns; the base columns are {list(names)}")
        if any(isinstance(v, (tuple, list)) for v in base.values()):
            return draw_in_ranges(model, base, num_samples, generator), 1
        missing = [n for n in names if n not in base]
        if missing:
            raise InputError(
                f"the base point lacks column(s) {missing}; give every base column {list(names)}, or ranges (lo, hi)"
            )
        return torch.tensor([[float(base[n]) for n in names]], dtype=torch.float64), num_samples
    points = torch.as_tensor(base.to_numpy() if hasattr(base, "to_numpy") else base, dtype=torch.float64)
    if points.dim() == 0 or (points.dim() == 1 and len(names) > 1 and points.shape[0] == len(names)):
        points = points.reshape(1, -1)
    elif points.dim() == 1:  # one base column: a list of values
        points = points.reshape(-1, 1)
    return points, num_samples


def draw_in_ranges(model: BundleModel, ranges: Mapping[str, Any], num: int, generator: torch.Generator | None) -> Tensor:
    """``num`` training base points (original units) whose columns lie in ``ranges``."""
    names = model.spec.base_names
    bank = model.spec.to_original(model.base_bank.points.double(), "base").cpu()
    if bank.shape[0] == 0:
        raise InputError(
            "this model has no training base points; train it (or load a trained checkpoint) before drawing base ranges"
        )
    inside = torch.ones(bank.shape[0], dtype=torch.bool)
    for name, bounds in ranges.items():
        j = names.index(name)
        if isinstance(bounds, (tuple, list)):
            if len(bounds) != 2:
                raise InputError(f"the range of base column {name!r} must be (lo, hi), got {bounds!r}")
            lo, hi = (-math.inf if bounds[0] is None else float(bounds[0]), math.inf if bounds[1] is None else float(bounds[1]))
            inside &= (bank[:, j] >= lo) & (bank[:, j] <= hi)
        else:  # a single value in a mapping of ranges: the nearest training value
            inside &= (bank[:, j] - float(bounds)).abs() <= (bank[:, j] - float(bounds)).abs().min()
        if not bool(inside.any()):
            raise InputError(
                f"no training base point has {name} in {bounds!r} (the data's {name} spans "
                f"{float(bank[:, j].min()):.6g} to {float(bank[:, j].max()):.6g}); widen the range"
            )
    rows = inside.nonzero().squeeze(1)
    pick = torch.randint(rows.numel(), (int(num),), generator=_cpu(generator))
    return bank[rows[pick]]


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is None or generator.device.type == "cpu":
        return generator
    return torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator, device=generator.device)))


def fixed_columns(model: BundleModel, fixed: Mapping[str, Any]) -> dict[int, float]:
    """``{column: value}`` (original units) → ``{column index: value}``, warning about values
    outside the training data's range of their column."""
    names = model.spec.total_names
    if not isinstance(fixed, Mapping) or not fixed:
        raise InputError(f"fixed= must be a mapping {{column: value}} of total columns, got {fixed!r}")
    out: dict[int, float] = {}
    low, high = model.total_range.bounds()
    if low is not None and high is not None:
        low, high = (model.spec.to_original(v.double(), "total") for v in (low, high))
    for name, value in fixed.items():
        if name not in names:
            raise InputError(f"fixed names {name!r}, which is not a total column; the total columns are {list(names)}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise InputError(f"fixed {name}={value!r} must be a number") from None
        if not math.isfinite(v):
            raise InputError(f"fixed {name}={value!r} must be a finite number")
        j = names.index(name)
        if low is not None and high is not None and not float(low[j]) <= v <= float(high[j]):
            log.warning(
                "fixed %s=%g is outside the training data's %s (%g to %g): its conditional is extrapolated",
                name,
                v,
                name,
                float(low[j]),
                float(high[j]),
            )
        out[j] = v
    if len(out) == len(names):
        raise InputError("fixed= fixes every total column; leave at least one column free to sample")
    return out


def sample_fixed(
    model: BundleModel,
    base: Tensor,
    num_samples: int,
    fixed: Mapping[int, float],
    generator: torch.Generator | None = None,
    steps: int = 300,
) -> Tensor:
    """Samples over ``base [B, d_B]`` (scaled units) whose columns ``fixed`` ({index: value in
    original units}) hold their values and whose other columns follow the model's conditional
    (module docstring): ``[B, num_samples, d_E]`` in scaled units."""
    if not model.has_density:
        raise InputError(f"fixed= needs a model with a density (bundlenet, cflow, cfm); {type(model).__name__} has none")
    if int(steps) < 2:
        raise InputError(f"fixed-input sampling needs at least 2 steps, got {steps}")
    d = model.spec.total_dim
    chains = max(int(num_samples), MIN_CHAINS)
    b = base.shape[0]
    cols = torch.tensor(sorted(fixed), device=base.device)
    free = torch.tensor([j for j in range(d) if j not in fixed], device=base.device)
    value = torch.zeros(d, dtype=base.dtype, device=base.device)
    value[cols] = torch.tensor([fixed[int(j)] for j in cols.tolist()], dtype=base.dtype, device=base.device)
    target_scaled = model.spec.to_scaled(value.unsqueeze(0), "total")  # [1, d]; only the fixed columns count
    u = _chain_starts(model, base, chains, cols, target_scaled, generator)
    y = model.base_scaler(base).repeat_interleave(chains, dim=0)
    u = model.project_start(u, y, free)

    def density(state: Tensor) -> Tensor:
        full = u.clone()
        full[:, free] = state
        return model.density_std(full, y, generator)

    state, acceptance = _metropolis(density, u[:, free], b, int(steps), generator)
    log.info("fixed-input sampling: %d chains x %d steps; acceptance %.2f after burn-in", b * chains, int(steps), acceptance)
    u[:, free] = state
    x = model.unstandardize(u)
    x[:, cols] = target_scaled[:, cols].to(x)
    return x.reshape(b, chains, d)[:, : int(num_samples)]


def _chain_starts(
    model: BundleModel, base: Tensor, chains: int, cols: Tensor, target_scaled: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Starts of ``chains`` chains per base point ``[B·chains, d_E]`` (standardised), the fixed
    columns ``cols`` set to the target: of ``POOL_FACTOR`` × chains fiber samples per base point,
    the chains nearest in the fixed columns."""
    b, d = base.shape[0], model.spec.total_dim
    pool = model._generate_eval(base.repeat_interleave(POOL_FACTOR * chains, dim=0), generator)
    pool[:, cols] = torch.where(torch.isfinite(pool[:, cols]), pool[:, cols], 0.0)
    u_pool = model.standardize(pool, dequantize=False).reshape(b, POOL_FACTOR * chains, d)
    with_target = pool[:1].clone()
    with_target[:, cols] = target_scaled[:, cols]
    u_fixed = model.standardize(with_target, dequantize=False)[0, cols]  # [k]
    gap = (u_pool[:, :, cols] - u_fixed).pow(2).sum(-1)
    nearest = gap.topk(chains, dim=1, largest=False).indices
    u = torch.gather(u_pool, 1, nearest.unsqueeze(-1).expand(-1, -1, d)).reshape(b * chains, d)
    u[:, cols] = u_fixed
    return u


def _metropolis(
    density: Callable[[Tensor], Tensor], state: Tensor, b: int, steps: int, generator: torch.Generator | None
) -> tuple[Tensor, float]:
    """``steps`` Metropolis–Hastings steps of ``b`` groups of chains ``state [b·chains, f]``
    (Gaussian proposals shaped by each group's spread, their scale adapted during the first
    half): the final states and the mean acceptance rate after burn-in."""
    logp = density(state)
    f = state.shape[1]
    chains = state.shape[0] // b
    chol = _proposal_factor(state.reshape(b, chains, f))  # [B, f, f]
    log_scale = torch.full((b, 1, 1), math.log(2.38**2 / f), dtype=state.dtype, device=state.device)
    burn_in = steps // 2
    accepted = torch.zeros(b, dtype=state.dtype, device=state.device)
    for step in range(steps):
        noise = torch.randn(b, chains, f, 1, generator=generator, device=state.device, dtype=state.dtype)
        move = ((log_scale / 2).exp().unsqueeze(1) * (chol.unsqueeze(1) @ noise)).squeeze(-1).reshape(b * chains, f)
        proposal = state + move
        logp_new = density(proposal)
        uniform = torch.rand(b * chains, generator=generator, device=state.device, dtype=state.dtype)
        accept = torch.isfinite(logp_new) & (uniform.log() < logp_new - logp)
        state = torch.where(accept.unsqueeze(1), proposal, state)
        logp = torch.where(accept, logp_new, logp)
        rate = accept.to(state.dtype).reshape(b, chains).mean(1)
        if step < burn_in:  # Robbins–Monro on the proposal's scale, frozen afterwards
            log_scale += (rate - TARGET_ACCEPTANCE).reshape(b, 1, 1) * (2.0 / math.sqrt(step + 1))
        else:
            accepted += rate
    return state, float(accepted.mean()) / max(steps - burn_in, 1)


def _proposal_factor(spread: Tensor) -> Tensor:
    """The Cholesky factor ``[B, f, f]`` of each group's covariance of chains ``spread [B, chains, f]``
    (with a small jitter)."""
    chains, f = spread.shape[1], spread.shape[2]
    centred = spread - spread.mean(1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred / max(chains - 1, 1)
    jitter = (
        1e-6
        * torch.eye(f, dtype=cov.dtype, device=cov.device)
        * cov.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-8)[:, None, None]
    )
    return torch.linalg.cholesky(cov + jitter)


def differentiable(forward: Callable[[Tensor], Tensor], x: Tensor) -> bool:
    """Whether ``forward`` has Jacobians by ``torch.func`` (a function of torch operations)."""
    try:
        torch.func.vmap(torch.func.jacrev(lambda row: forward(row.unsqueeze(0)).squeeze(0)))(x[:2])
    except Exception:  # NumPy inside, in-place ops, data-dependent control flow, ...
        return False
    return True


def refine(
    model: BundleModel, x: Tensor, y: Tensor, forward: Callable[[Tensor], Tensor], steps: int, keep: Sequence[int] = ()
) -> Tensor:
    """Samples ``x [N, d_E]`` moved onto π(x) = ``y [N, d_B]`` (both in original units) by at most
    ``steps`` Gauss–Newton steps over the continuous columns not in ``keep``: ``[N, d_E]``
    (float64). The columns' bounds clip the result."""
    support = model.spec.total_support
    moving = torch.tensor(
        [j not in keep and (support is None or support[j].values is None) for j in range(model.spec.total_dim)], device=x.device
    )
    if not bool(moving.any()):
        raise InputError("refine has no column to move: every total column is fixed or discrete")
    x = x.detach().to(torch.float64)
    y = y.to(x)
    if differentiable(forward, x):

        def masked(v: Tensor) -> Tensor:  # kept columns get no gradient, so steps leave them alone
            return forward(torch.where(moving, v, v.detach()))

        moved = project_to_level_set(x, y, masked, steps=steps)
    else:
        moved = project_to_level_set(
            x, y, forward, steps=steps, jacobian=lambda v: finite_difference_jacobian(forward, v, moving)
        )
    if support is not None:
        low = torch.tensor([-math.inf if s.lower is None else s.lower for s in support], dtype=x.dtype, device=x.device)
        high = torch.tensor([math.inf if s.upper is None else s.upper for s in support], dtype=x.dtype, device=x.device)
        moved = torch.maximum(torch.minimum(moved, high), low)
    return moved


def finite_difference_jacobian(forward: Callable[[Tensor], Tensor], x: Tensor, columns: Tensor) -> Tensor:
    """Central differences of ``forward`` at ``x [N, d]`` in the ``columns`` (a boolean mask ``[d]``;
    zero elsewhere): ``[N, m, d]``, two batched calls of ``forward`` per column."""
    out = forward(x)
    jac = x.new_zeros(x.shape[0], out.shape[1], x.shape[1])
    for j in columns.nonzero().squeeze(1).tolist():
        h = 1e-6 * x[:, j].abs().clamp_min(1.0)
        up, down = x.clone(), x.clone()
        up[:, j] += h
        down[:, j] -= h
        jac[:, :, j] = (forward(up) - forward(down)) / (2 * h).unsqueeze(1)
    return jac
