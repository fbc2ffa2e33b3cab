"""Benchmarks: ``python -m bundlenet.benchmark [--quick] [--output benchmark.json]``.

Each row runs in a fresh subprocess so its peak RSS is its own. Printed as a table and written
as JSON, with the thread count and the machine's load average beside every figure. Speed is
reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from bundlenet.io import write_json

log = logging.getLogger("bundlenet.benchmark")

# The authors' torus setup (their code: 27.8M parameters, FrEIA RealNVP blocks with 4 subnets;
# here nflows affine couplings, 2 per RealNVP block, each subnet giving scale and shift).
AUTHORS = dict(num_nbhds=25, total_dim=20, num_circles=3, num_blocks=10, hidden_features=512, depth=5,
               coupling="affine", num_generated=5, overlap=1)
DEFAULT: dict[str, Any] = {}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model_and_data(num_train: int, batch_size: int | None, model_kwargs: dict[str, Any], seed: int = 0):
    import pytorch_lightning as pl

    from bundlenet.bundles import Torus
    from bundlenet.datamodule import BundleDataModule
    from bundlenet.models.bundlenet import BundleNet

    pl.seed_everything(seed, verbose=False)
    steps = 1 if batch_size is None else -(-num_train // batch_size)
    dm = BundleDataModule(Torus(), num_train=num_train, batch_size=batch_size, steps_per_epoch=steps, num_val_fibers=2, val_fiber_points=50)
    dm.setup("fit")
    model = BundleNet(dm.spec, optimizer=functools.partial(torch.optim.Adam, lr=1e-4), **model_kwargs)
    model.fit_data(*dm.train_tensors())
    return model, dm, steps


def _time_steps(model, batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int) -> float:
    """Seconds per bare step (loss, backward, Adam) over ``steps`` steps after one warm-up."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(i: int) -> None:
        total, base = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        model.loss_terms(total, base, update_prior=True).total(model.loss_weights).backward()
        opt.step()

    step(0)
    start = time.perf_counter()
    for i in range(steps):
        step(i + 1)
    return (time.perf_counter() - start) / steps


def row_training(name: str, num_train: int = 1000, batch_size: int | None = None, authors: bool = False, timed_steps: int = 20, num_nbhds: int | None = None) -> dict[str, Any]:
    kwargs = dict(AUTHORS if authors else DEFAULT)
    if num_nbhds is not None:
        kwargs["num_nbhds"] = num_nbhds
    model, dm, steps_per_epoch = _model_and_data(num_train, batch_size, kwargs)
    loader = dm.train_dataloader()
    batches = [b for _, b in zip(range(min(timed_steps + 1, steps_per_epoch)), loader)]
    sec = _time_steps(model, batches, timed_steps)
    return {"row": name, "parameters": sum(p.numel() for p in model.parameters()), "points": num_train,
            "batch": batch_size or num_train, "num_nbhds": model.cover.num_nbhds, "s_per_step": sec,
            "steps_per_s": 1 / sec, "steps_per_epoch": steps_per_epoch, "s_per_epoch": sec * steps_per_epoch,
            "timed_steps": timed_steps}


def row_lightning_overhead(timed_steps: int = 50) -> dict[str, Any]:
    """A Lightning fit of ``timed_steps`` full-batch steps vs the same bare steps."""
    import pytorch_lightning as pl

    model, dm, _ = _model_and_data(1000, None, DEFAULT)
    bare = _time_steps(model, [dm.train_tensors()], timed_steps)
    model, dm, _ = _model_and_data(1000, None, DEFAULT)
    trainer = pl.Trainer(max_epochs=timed_steps + 1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    times: list[float] = []

    class Clock(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            times.append(time.perf_counter())

    trainer.callbacks.append(Clock())
    trainer.fit(model, datamodule=dm)
    lightning = (time.perf_counter() - times[1]) / timed_steps  # epoch 0 is the warm-up
    return {"row": "lightning step / bare step", "bare_s_per_step": bare, "lightning_s_per_step": lightning, "ratio": lightning / bare}


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


def row_quality(name: str, steps: int) -> dict[str, Any]:
    """Time to quality: ``python train.py`` (default torus run) with ``steps`` optimizer steps;
    wall time of the whole job and the fiber W2 ratio to the noise floor from its metrics.json."""
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(root / "train.py"), f"trainer.max_epochs={steps}", "logger=none",
               "~callbacks.progress_bar", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp}"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
        wall = time.perf_counter() - start
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
    w2 = metrics["fiber"]["w2"]
    return {"row": name, "steps": steps, "wall_s": wall, "train_s": metrics["train_seconds"],
            "fiber_w2": w2["value"], "noise_floor": w2["noise_floor"], "ratio": w2["ratio"]}


ROWS: dict[str, Callable[[], dict[str, Any]]] = {
    "train_default": lambda: row_training("train: default (torus, full batch)"),
    "train_authors": lambda: row_training("train: authors' size (torus, batches of 200)", batch_size=200, authors=True, timed_steps=5),
    "lightning_overhead": row_lightning_overhead,
    "sampling": row_sampling,
    "quality_short": lambda: row_quality("time to quality: default run, 500 steps", 500),
    "quality_default": lambda: row_quality("time to quality: default run, 2000 steps", 2000),
    **{f"size_{n}": functools.partial(row_training, f"scaling: {n} points", num_train=n, batch_size=1000, timed_steps=10)
       for n in (1_000, 10_000, 100_000, 1_000_000)},
    **{f"nbhds_{k}": functools.partial(row_training, f"scaling: {k} neighbourhoods", num_nbhds=k, timed_steps=10)
       for k in (5, 25, 50, 100)},
}


def run_row(name: str, threads: int) -> dict[str, Any]:
    """Run one row in a subprocess; add its peak RSS, threads and load average."""
    cmd = [sys.executable, "-m", "bundlenet.benchmark", "--row", name, "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark row {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| row | figures | peak RSS (MB) | threads | load (1 min) |", "|---|---|---|---|---|"]
    skip = {"row", "peak_rss_mb", "threads", "load_1min"}
    for r in rows:
        figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items() if k not in skip)
        lines.append(f"| {r['row']} | {figures} | {r['peak_rss_mb']:.0f} | {r['threads']} | {r['load_1min']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", nargs="*", default=list(ROWS), help=f"rows to run (default all): {', '.join(ROWS)}")
    parser.add_argument("--quick", action="store_true", help="skip the 10^5 and 10^6 scaling rows and the time-to-quality runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per row (the reference used 1)")
    parser.add_argument("--output", default="benchmark.json")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.row:  # inside the subprocess of one row
        result = ROWS[args.row]()
        result.update(peak_rss_mb=peak_rss_mb(), threads=torch.get_num_threads(), load_1min=os.getloadavg()[0])
        sys.stdout.write(json.dumps(result) + "\n")
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    slow = ("size_100000", "size_1000000", "quality_short", "quality_default")
    names = [n for n in args.rows if not (args.quick and n in slow)]
    rows = []
    for name in names:
        log.info("benchmark %s ...", name)
        rows.append(run_row(name, args.threads))
    table = format_table(rows)
    sys.stdout.write(table + "\n")
    write_json(args.output, {"rows": rows, "cpu_count": os.cpu_count(), "torch": torch.__version__})
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
