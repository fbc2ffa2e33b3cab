"""bundlenet.fit: train.py's configs and job from Python, with the same one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bundlenet.errors import InputError
from tests.conftest import REPO

FAST = {"max_steps": 20, "logger": "none", "num_val_fibers": 2, "val_fiber_points": 50}


def line_table(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """x1, x2 ~ N(0, 1), y = x1 + x2: every fiber is a line."""
    x = np.random.default_rng(seed).normal(size=(rows, 2))
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": x.sum(1)})


def test_fit_dataframe_writes_a_run_and_returns_the_model(tmp_path: Path) -> None:
    from bundlenet import BundleNet, fit
    from bundlenet.checkpoint import load_model

    model = fit(line_table(), base="y", run_dir=tmp_path / "run", evaluate=False, **FAST)
    assert isinstance(model, BundleNet) and not model.training
    assert model.run_dir == tmp_path / "run" and model.metrics is not None and model.metrics["steps"] == 20
    assert (tmp_path / "run" / "data.csv").is_file() and (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert model.spec.base_names == ("y",) and model.spec.total_names == ("x1", "x2")
    assert model.spec.fiber_span == 1  # found from the data, as train.py data=csv does
    again = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert again.spec == model.spec


def test_fit_structured_array_and_keywords(tmp_path: Path) -> None:
    from bundlenet import fit

    table = line_table().to_records(index=False)
    model = fit(
        table,
        base=["y"],
        model="cflow",
        run_dir=tmp_path / "run",
        evaluate=False,
        num_blocks=2,
        overrides=["model.hidden_features=16"],
        **FAST,
    )
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert type(model).__name__ == "ConditionalFlow" and model.hparams["num_blocks"] == 2
    assert "max_steps: 20" in config and "hidden_features: 16" in config


def test_fit_keyword_mapping() -> None:
    from bundlenet.api import compose_fit_config, resolve_key

    cfg = compose_fit_config("bundlenet", [], {})
    assert resolve_key(cfg, "max_steps") == "trainer.max_steps"
    assert resolve_key(cfg, "num_train") == "data.num_train"
    assert resolve_key(cfg, "model__fiber_context") == "model.fiber_context"
    assert resolve_key(cfg, "model__optimizer__lr") == "model.optimizer.lr"
    assert resolve_key(cfg, "seed") == "seed"
    cfg = compose_fit_config("bundlenet", ["trainer.max_steps=7"], {"model__fiber_context": "chart", "hidden_features": 8})
    assert cfg.trainer.max_steps == 7 and cfg.model.fiber_context == "chart" and cfg.model.hidden_features == 8


BAD_FITS = [
    ({"base": "strength"}, "data.base_columns: column 'strength' is not in the header"),
    ({"base": "y", "model": "bundlenet2"}, "unknown model 'bundlenet2'; choose one of:"),
    ({"base": "y", "max_stepz": 5}, "max_stepz= is not a key of trainer, model, data, evaluation"),
    (
        {"base": "y", "fiber_span": 1},
        "fiber_span= is a key of more than one config group; write model__fiber_span= or data__fiber_span=",
    ),
    ({"base": "y", "model__nonsense": 1}, "model__nonsense= is not a config key"),
    ({"base": "y", "num_train": 1}, "data.num_train=1 must be between 2 and"),
    ({"base": "y", "overrides": ["trainer.max_steps=="]}, "bad override"),
]


@pytest.mark.parametrize(("options", "message"), BAD_FITS, ids=[m[:30] for _, m in BAD_FITS])
def test_fit_rejects_bad_input_in_one_line(tmp_path: Path, options: dict[str, object], message: str) -> None:
    from bundlenet import fit

    with pytest.raises(InputError) as info:
        fit(line_table(), run_dir=tmp_path / "run", evaluate=False, logger="none", **options)  # type: ignore[arg-type]
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((5, 3)), "a NumPy array needs field names"),
        ([1, 2, 3], "data must be a pandas DataFrame"),
        ("/nonexistent/table.csv", "is not a file"),
    ],
)
def test_fit_rejects_bad_data(tmp_path: Path, data: object, message: str) -> None:
    from bundlenet import fit

    with pytest.raises(InputError, match=message):
        fit(data, base="y", run_dir=tmp_path / "run", logger="none")  # type: ignore[arg-type]


@pytest.mark.slow
def test_fit_trains_the_model_train_py_trains(tmp_path: Path) -> None:
    """Same file, seed and options: the same config and the same fiber metrics as train.py."""
    from bundlenet import fit

    path = tmp_path / "line.csv"
    line_table(600).to_csv(path, index=False)
    options = [
        "trainer.max_steps=20",
        "logger=none",
        "data.num_val_fibers=2",
        "data.val_fiber_points=50",
        "evaluation.iterations=1",
        "evaluation.num_fibers=2",
        "evaluation.num_global=200",
        "evaluation.global_ot_points=null",
        "evaluation.coverage_points=200",
        "evaluation.num_points=50",
    ]
    fit(path, base="y", run_dir=tmp_path / "fit", overrides=options)
    subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=csv",
            f"data.path={path}",
            "data.base_columns=[y]",
            *options,
            f"hydra.run.dir={tmp_path / 'cli'}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    ours, theirs = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("fit", "cli"))
    for name, metric in theirs["fiber"].items():
        assert ours["fiber"][name]["value"] == pytest.approx(metric["value"], rel=1e-5), name
    strip = [line for line in (tmp_path / "fit" / "config.yaml").read_text().splitlines() if str(tmp_path) not in line]
    assert strip == [line for line in (tmp_path / "cli" / "config.yaml").read_text().splitlines() if str(tmp_path) not in line]


def test_sample_frame_gives_discrete_values_exactly_as_in_the_data(tmp_path: Path) -> None:
    """A column of ages 90 and 91 (scaled and back in float32 they become 90.00001): the frame
    holds exactly 90 and 91, as the sample CLI's CSV does."""
    from bundlenet import fit

    table = line_table(400)
    table["age"] = np.where(table["x1"] > 0, 91.0, 90.0)
    model = fit(table, base="y", run_dir=tmp_path / "run", evaluate=False, **FAST)
    frame = model.sample_frame([[0.5], [-1.0]], 50, seed=0)
    assert set(np.unique(frame["age"].to_numpy())) <= {90.0, 91.0}
