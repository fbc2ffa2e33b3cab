"""The LR schedule and the time-fitted run length (FitToTime), against closed forms."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from bundlenet import callbacks
from bundlenet.callbacks import FitToTime
from bundlenet.optim import WarmupCosine, cosine_with_warmup


def test_warmup_cosine_closed_form() -> None:
    f = WarmupCosine(total_steps=110, warmup_steps=10, final_fraction=0.1)
    assert [f(0), f(4), f(9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_a_changed_schedule_length_is_saved_with_the_scheduler() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_with_warmup(opt, total_steps=1000, warmup_steps=5)
    sched.lr_lambdas[0].total_steps = 321
    state = sched.state_dict()
    fresh = cosine_with_warmup(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), total_steps=1000)
    fresh.load_state_dict(state)
    assert fresh.lr_lambdas[0].total_steps == 321 and fresh.lr_lambdas[0].warmup_steps == 5


def test_fit_to_time_sets_the_steps_the_pace_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    """100 steps in 10 s with 60 s to train (margin 1): 500 more steps, the schedule (twice as
    long as max_steps here) stretched in proportion; past the budget, one more step."""
    clock = [1000.0]
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock[0])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_with_warmup(opt, total_steps=2_000_000, warmup_steps=5)
    trainer = SimpleNamespace(
        global_step=0,
        max_steps=1_000_000,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(max_steps=1_000_000)),
        lr_scheduler_configs=[SimpleNamespace(scheduler=sched)],
    )
    cb = FitToTime(seconds=60, check_every=100, margin=1.0)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    trainer.global_step, clock[0] = 50, 1005.0
    cb.on_train_batch_end(trainer, None)  # type: ignore[arg-type]  # not a check step
    assert trainer.fit_loop.epoch_loop.max_steps == 1_000_000
    trainer.global_step, clock[0] = 100, 1010.0
    cb.on_train_batch_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.fit_loop.epoch_loop.max_steps == 600
    assert sched.lr_lambdas[0].total_steps == 1200
    trainer.global_step, clock[0] = 200, 1070.0  # the budget is spent
    cb.on_train_batch_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.fit_loop.epoch_loop.max_steps == 201
