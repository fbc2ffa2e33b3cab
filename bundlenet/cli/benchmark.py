"""Benchmarks: ``python -m bundlenet.benchmark [--rows ROW ...] [--quick] [--threads N] [--output benchmark.json]``.

Each row runs in a fresh subprocess so its peak RSS is its own. Printed as a table and written
as JSON, with the thread count and the machine's load average beside every figure. Speed is
reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from bundlenet.io import write_json
from bundlenet.provenance import provenance

log = logging.getLogger("bundlenet.cli.benchmark")

# The authors' torus setup. Their code: 27.8M parameters, a conditional affine map and 5 FrEIA
# RealNVP blocks, each block 2 couplings with separate scale and shift subnets (20 subnets of
# width 512, depth 5). AUTHORS has their hyperparameters in nflows terms: 10 affine couplings whose
# one subnet gives scale and shift (14.6M parameters, half their arithmetic per point).
# AUTHORS_PARAMS has their parameter count and arithmetic per point: 20 couplings (27.9M).
AUTHORS = dict(
    num_nbhds=25,
    total_dim=20,
    num_circles=3,
    num_blocks=10,
    hidden_features=512,
    depth=5,
    coupling="affine",
    num_generated=5,
    overlap=1,
)
AUTHORS_PARAMS = dict(AUTHORS, num_blocks=20)
DEFAULT: dict[str, Any] = {}
Precision = Literal["32-true", "bf16-mixed"]


def peak_rss_mb() -> float:
    """Peak RSS of this process or of the largest child it waited for (``train.py`` rows), MB."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


MODELS: dict[str, str] = {
    "bundlenet": "bundlenet.models.bundlenet.BundleNet",
    "paper": "bundlenet.models.paper.PaperBundleNet",
    "cflow": "bundlenet.models.baselines.cflow.ConditionalFlow",
    "cfm": "bundlenet.models.baselines.cfm.ConditionalFlowMatching",
}


def _model_and_data(
    num_train: int, batch_size: int | None, model_kwargs: dict[str, Any], seed: int = 0, model: str = "bundlenet"
):
    """A torus datamodule and a ``model`` (a key of :data:`MODELS`) at its defaults plus
    ``model_kwargs``, its data-dependent state fitted."""
    import importlib

    import pytorch_lightning as pl

    from bundlenet.bundles import Torus
    from bundlenet.data.datamodule import BundleDataModule

    pl.seed_everything(seed, verbose=False)
    steps = 1 if batch_size is None else -(-num_train // batch_size)
    dm = BundleDataModule(
        Torus(), num_train=num_train, batch_size=batch_size, steps_per_epoch=steps, num_val_fibers=2, val_fiber_points=50
    )
    dm.setup("fit")
    module, _, name = MODELS[model].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    net = cls(dm.spec, optimizer=functools.partial(torch.optim.Adam, lr=1e-4), **model_kwargs)
    net.fit_data(*dm.train_tensors())
    return net, dm, steps


def _time_steps(model, batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int, precision: Precision = "32-true") -> float:
    """Seconds per bare step (loss, backward, Adam) over ``steps`` steps after one warm-up.

    ``bf16-mixed`` computes the loss under ``torch.autocast("cpu", torch.bfloat16)``, as
    Lightning's ``trainer.precision=bf16-mixed`` does.
    """
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def autocast() -> contextlib.AbstractContextManager[Any]:
        return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else contextlib.nullcontext()

    def step(i: int) -> None:
        total, base = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = model.training_step((total, base), i)
        loss.backward()
        opt.step()

    with warnings.catch_warnings():  # self.log without a Trainer: nothing to log to here
        warnings.filterwarnings("ignore", ".*self.trainer. reference is not registered.*")
        step(0)
        start = time.perf_counter()
        for i in range(steps):
            step(i + 1)
    return (time.perf_counter() - start) / steps


def row_training(
    name: str,
    num_train: int = 1000,
    batch_size: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    timed_steps: int = 20,
    num_nbhds: int | None = None,
    precision: Precision = "32-true",
    model_name: str = "bundlenet",
) -> dict[str, Any]:
    """Seconds per training step of ``model_name`` on the torus (bare steps: loss, backward, Adam)."""
    kwargs = dict(DEFAULT if model_kwargs is None else model_kwargs)
    if num_nbhds is not None:
        kwargs["num_nbhds"] = num_nbhds
    model, dm, steps_per_epoch = _model_and_data(num_train, batch_size, kwargs, model=model_name)
    loader = dm.train_dataloader()
    batches = [b for _, b in zip(range(min(timed_steps + 1, steps_per_epoch)), loader)]
    sec = _time_steps(model, batches, timed_steps, precision)
    return {
        "row": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "precision": precision,
        "model": model_name,
        "points": num_train,
        "batch": batch_size or num_train,
        "num_nbhds": model.cover.num_nbhds if hasattr(model, "cover") else None,
        "s_per_step": sec,
        "steps_per_s": 1 / sec,
        "steps_per_epoch": steps_per_epoch,
        "s_per_epoch": sec * steps_per_epoch,
        "timed_steps": timed_steps,
    }


def row_lightning_overhead(timed_steps: int = 50) -> dict[str, Any]:
    """A Lightning fit of ``timed_steps`` full-batch steps vs the same bare steps."""
    import pytorch_lightning as pl

    from bundlenet.loggers import bare_trainer

    model, dm, _ = _model_and_data(1000, None, DEFAULT)
    bare = _time_steps(model, [dm.train_tensors()], timed_steps)
    model, dm, _ = _model_and_data(1000, None, DEFAULT)
    trainer = bare_trainer(max_epochs=timed_steps + 1, accelerator="cpu", devices=1)
    times: list[float] = []

    class Clock(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            times.append(time.perf_counter())

    trainer.callbacks.append(Clock())  # type: ignore[attr-defined]  # Lightning sets it at run time
    trainer.fit(model, datamodule=dm)
    lightning = (time.perf_counter() - times[1]) / timed_steps  # epoch 0 is the warm-up
    return {
        "row": "lightning step / bare step",
        "bare_s_per_step": bare,
        "lightning_s_per_step": lightning,
        "ratio": lightning / bare,
    }


def row_sampling() -> dict[str, Any]:
    model, dm, _ = _model_and_data(1000, None, DEFAULT)
    base = dm.bundle.sample_total(15, torch.Generator().manual_seed(0)).base
    model.sample_fiber(base, 200, seed=0)
    start = time.perf_counter()
    model.sample_fiber(base, 200, seed=1)
    fibers = time.perf_counter() - start
    start = time.perf_counter()
    model.sample(4000, seed=0)
    global_s = time.perf_counter() - start
    return {"row": "sampling", "fibers_15x200_s": fibers, "fiber_points_per_s": 3000 / fibers, "global_4000_s": global_s}


def row_digits(model_name: str, base: str = "label", timed_steps: int = 10) -> dict[str, Any]:
    """``data=digits`` over ``base`` (label: the fiber of 3s; ink: the fiber over an ink of 300)
    with ``model_name`` at the configs' defaults: seconds per training step at the default
    batch, and seconds to sample 1000 images of one fiber (for ink, rounding along the base
    included)."""
    import hydra
    from hydra import compose, initialize_config_dir

    from bundlenet.cli.common import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=digits", f"data.base={base}", f"model={model_name}", "seed=0"])
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    model = hydra.utils.instantiate(cfg.model, spec=dm.spec)
    model.fit_data(*dm.train_tensors())
    batch, steps_per_epoch = dm.batching()
    batches = [b for _, b in zip(range(min(timed_steps + 1, steps_per_epoch)), dm.train_dataloader())]
    sec = _time_steps(model, batches, timed_steps)
    model.eval()
    point = [[3.0]] if base == "label" else [[300.0]]
    model.sample_fiber(point, 1000, seed=0)
    start = time.perf_counter()
    model.sample_fiber(point, 1000, seed=1)
    sample_s = time.perf_counter() - start
    return {
        "row": f"digits: {model_name} at its defaults (64 pixels, {base})",
        "model": model_name,
        "batch": batch,
        "s_per_step": sec,
        "sample_1000_images_s": sample_s,
    }


def _train_py(overrides: list[str]) -> tuple[dict[str, Any], float]:
    """Run ``python train.py OVERRIDES`` in a temporary run dir: (its metrics.json, wall seconds).
    Raises :class:`RuntimeError` with the job's last error line when it fails."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "bundlenet.cli.train",
            *overrides,
            "logger=none",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={tmp}",
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(" ".join(proc.stderr.strip().splitlines()[-1:]) or f"train.py exited with {proc.returncode}")
        return json.loads((Path(tmp) / "metrics.json").read_text()), wall


def row_quality(name: str, steps: int) -> dict[str, Any]:
    """Time to quality: ``python train.py`` (default torus run) with ``steps`` optimizer steps;
    wall time of the whole job, the fiber W2 ratio to the noise floor from its metrics.json, and
    the wall time of its final evaluation (the default protocol)."""
    metrics, wall = _train_py([f"trainer.max_epochs={steps}"])
    w2 = metrics["fiber"]["w2"]
    return {
        "row": name,
        "steps": steps,
        "wall_s": wall,
        "train_s": metrics["train_seconds"],
        "evaluation_s": metrics["evaluation_seconds"],
        "fiber_w2": w2["value"],
        "noise_floor": w2["noise_floor"],
        "ratio": w2["ratio"],
    }


def row_paper_job(experiment: str, options: Options, precision: Precision = "32-true") -> dict[str, Any]:
    """``python train.py experiment=EXPERIMENT`` (the authors' model and settings) for
    ``options.epochs`` epochs and a 2-iteration evaluation: the peak RSS of the whole job
    (Lightning, checkpoints, evaluation) and its training seconds (setup included; the
    ``train_authors*`` rows give the time per step). Skipped, with the reason, when its data
    cannot be had (the UCI files neither in the data root nor downloadable)."""
    name = f"job: train.py experiment={experiment}"
    overrides = [
        f"experiment={experiment}",
        f"trainer.max_epochs={options.epochs}",
        "evaluation.iterations=2",
        f"trainer.precision={precision}",
    ]
    if options.data_root is not None and experiment in ("paper_wine", "paper_airfoil"):
        overrides.append(f"data.root={Path(options.data_root).resolve()}")
    overrides += options.job_overrides
    try:
        metrics, wall = _train_py(overrides)
    except RuntimeError as err:
        return {"row": name, "precision": precision, "skipped": str(err)}
    return {
        "row": name,
        "precision": precision,
        "epochs": options.epochs,
        "steps": metrics["steps"],
        "train_s": metrics["train_seconds"],
        "wall_s": wall,
    }


@dataclass(frozen=True)
class Options:
    """What some rows need from the command line."""

    data_root: str | None = None
    epochs: int = 2
    job_overrides: tuple[str, ...] = ()  # extra train.py overrides of the job rows


_AUTHORS_ROW = "train: authors' hyperparameters (torus, batches of 200, 10 couplings)"
_AUTHORS_PARAMS_ROW = "train: authors' parameter count (torus, batches of 200, 20 couplings)"

Row = Callable[[Options], dict[str, Any]]


def _training_row(name: str, **kwargs: Any) -> Row:
    """``row_training(name, **kwargs)`` (it needs no options)."""
    return lambda o: row_training(name, **kwargs)


def _job_row(name: str, precision: Precision) -> Row:
    """``row_paper_job`` of the ``paper_{name}`` experiment at ``precision``."""
    return lambda o: row_paper_job(f"paper_{name}", o, precision)


_JOB_PRECISIONS: tuple[tuple[str, Precision], ...] = (("", "32-true"), ("_bf16", "bf16-mixed"))

ROWS: dict[str, Row] = {
    **{f"train_{m}": _training_row(f"train: {m} at its defaults (torus, 1000 points, full batch)", model_name=m) for m in MODELS},
    "train_authors": lambda o: row_training(
        _AUTHORS_ROW, batch_size=200, model_kwargs=AUTHORS, model_name="paper", timed_steps=10
    ),
    "train_authors_bf16": lambda o: row_training(
        _AUTHORS_ROW, batch_size=200, model_kwargs=AUTHORS, model_name="paper", timed_steps=10, precision="bf16-mixed"
    ),
    "train_authors_params": lambda o: row_training(
        _AUTHORS_PARAMS_ROW, batch_size=200, model_kwargs=AUTHORS_PARAMS, model_name="paper", timed_steps=5
    ),
    "train_authors_params_bf16": lambda o: row_training(
        _AUTHORS_PARAMS_ROW,
        batch_size=200,
        model_kwargs=AUTHORS_PARAMS,
        model_name="paper",
        timed_steps=10,
        precision="bf16-mixed",
    ),
    **{f"job_{name}{suffix}": _job_row(name, precision) for name in ("torus", "wine") for suffix, precision in _JOB_PRECISIONS},
    "lightning_overhead": lambda o: row_lightning_overhead(),
    "sampling": lambda o: row_sampling(),
    "digits_bundlenet": lambda o: row_digits("bundlenet"),
    "digits_cflow": lambda o: row_digits("cflow"),
    "digits_ink_bundlenet": lambda o: row_digits("bundlenet", "ink"),
    "quality_short": lambda o: row_quality("time to quality: default run, 500 steps", 500),
    "quality_default": lambda o: row_quality("time to quality: default run, 2000 steps", 2000),
    **{
        f"size_{n}": _training_row(f"scaling: {n} points", num_train=n, batch_size=1000, timed_steps=10)
        for n in (1_000, 10_000, 100_000, 1_000_000)
    },
    **{f"nbhds_{k}": _training_row(f"scaling: {k} neighbourhoods", num_nbhds=k, timed_steps=10) for k in (5, 25, 50, 100)},
}


def run_row(name: str, threads: int, options: Options = Options()) -> dict[str, Any]:
    """Run one row in a subprocess; add its peak RSS, threads and load average."""
    cmd = [
        sys.executable,
        "-m",
        "bundlenet.cli.benchmark",
        "--row",
        name,
        "--threads",
        str(threads),
        "--epochs",
        str(options.epochs),
    ]
    if options.data_root is not None:
        cmd += ["--data-root", options.data_root]
    for override in options.job_overrides:
        cmd += ["--job-override", override]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark row {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| row | figures | peak RSS (MB) | threads | load (1 min) |", "|---|---|---|---|---|"]
    skip = {"row", "name", "peak_rss_mb", "threads", "load_1min"}
    for r in rows:
        figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items() if k not in skip)
        rss = "" if "skipped" in r else f"{r['peak_rss_mb']:.0f}"
        lines.append(f"| {r['row']} | {figures} | {rss} | {r['threads']} | {r['load_1min']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--rows",
        nargs="*",
        default=list(ROWS),
        choices=list(ROWS),
        metavar="ROW",
        help=f"rows to run (default all): {', '.join(ROWS)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="skip the 10^5 and 10^6 scaling rows, the train.py jobs and the time-to-quality runs"
    )
    parser.add_argument(
        "--data-root",
        help="folder of the UCI wine files for the wine jobs (default: data/ of the repository, downloaded when missing)",
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the train.py jobs at the authors' size")
    parser.add_argument(
        "--job-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra train.py override for the job rows (repeatable), e.g. data.download=false",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per row (the reference used 1)")
    parser.add_argument("--output", default="benchmark.json")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = Options(args.data_root, args.epochs, tuple(args.job_override))
    if args.row:  # inside the subprocess of one row
        result = ROWS[args.row](options)
        result.update(name=args.row, peak_rss_mb=peak_rss_mb(), threads=torch.get_num_threads(), load_1min=os.getloadavg()[0])
        sys.stdout.write(json.dumps(result) + "\n")
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    slow = ("size_100000", "size_1000000", "quality_short", "quality_default")
    names = [n for n in args.rows if not (args.quick and (n in slow or n.startswith("job_")))]
    rows = []
    for name in names:
        log.info("benchmark %s ...", name)
        rows.append(run_row(name, args.threads, options))
    table = format_table(rows)
    sys.stdout.write(table + "\n")
    write_json(args.output, {"rows": rows, "cpu_count": os.cpu_count(), "torch": torch.__version__, "provenance": provenance()})
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
