"""Bad input costs one clear line that names the fix, and changes no existing file.

Most cases run the CLI code in-process (fast); a few run the real command lines to check that
the error reaches the user as a single ``error:`` line with exit code 2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from bundlenet.checkpoint import checkpoint_step, load_model
from bundlenet.cli.common import check_group_choices
from bundlenet.errors import BundleNetError, CheckpointError, InputError
from tests.conftest import REPO, make_torus_model

CONF = REPO / "conf"


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text.strip(), text
    return text


def compose_cfg(name: str, overrides: list[str], out: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    if name == "train":
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
    return cfg


# ----------------------------------------------------------------------------- train.py
TRAIN_CASES = [
    (["model.num_nbhds=0"], "model.num_nbhds must be at least 1"),
    (["data.num_train=50", "model.num_nbhds=80"], "model.num_nbhds=80 exceeds the 50 distinct base points"),
    (["model.fiber_context=index"], "model.fiber_context must be chart, none or base"),
    (["model.context_noise=-1"], "model.context_noise must be a finite number >= 0"),
    (["final_model=newest"], "final_model must be one of auto, best, last"),
    (["model.num_circles=-1"], "model.num_circles must be >= 0"),
    (["data.fiber_circles=two"], "data.fiber_circles must be auto, null"),
    (
        ["model=bundlenet_paper", "model.num_circles=2", "model.total_dim=4"],
        "model.num_circles=2 needs 2*num_circles <= model.total_dim - d_B",
    ),
    (["model=bundlenet_paper", "model.total_dim=2"], "model.total_dim=2 is too small"),
    (["model=bundlenet_paper", "model.overlap=0"], "model.overlap must be between 1 and model.num_nbhds"),
    (["model=bundlenet_paper", "model.coupling=glow"], "model.coupling must be 'rq_spline' or 'affine'"),
    (["model=bundlenet_paper", "model.context=index"], "model.context must be one of centre, embedding, both"),
    (["model=bundlenet_paper", "+model.loss_weights.kl=1.0"], "unknown model.loss_weights keys ['kl']"),
    (["data.num_train=1"], "data.num_train must be at least 2"),
    (["data.batch_size=1"], "data.batch_size must be an integer >= 2"),
    (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path=/nonexistent/last.ckpt not found"),
]


@pytest.mark.parametrize(("overrides", "message"), TRAIN_CASES, ids=[c[1][:40] for c in TRAIN_CASES])
def test_train_rejects_bad_options(tmp_path: Path, overrides: list[str], message: str) -> None:
    from bundlenet.cli.train import train
    from bundlenet.errors import user_error

    cfg = compose_cfg("train", [*overrides, "logger=none", "trainer.max_epochs=1"], tmp_path / "run")
    with pytest.raises(Exception) as info:
        train(cfg)
    err = user_error(info.value)
    assert err is not None, f"not a user error: {info.value!r}"
    assert message in one_line(err)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("data=wine2", "unknown data 'wine2'; choose one of:"),
        ("model=bundlenet,gan", "unknown model 'gan'; choose one of: bundlenet"),
    ],
)
def test_unknown_config_names_list_the_choices(arg: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        check_group_choices(CONF, [arg])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (err.count("\n") == 0 and message in err and "torus" in err) or "bundlenet" in err


def test_train_cli_error_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "data=nope"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: unknown data 'nope'")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- sample CLI
def sample_cfg(tmp_path: Path, ckpt: Path, *overrides: str):
    return compose_cfg("sample", [f"ckpt_path={ckpt}", f"output={tmp_path / 'out.csv'}", *overrides], tmp_path)


def write_checkpoint_variants(tmp_path: Path, ckpt: Path) -> dict[str, Path]:
    raw = Path(ckpt).read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(raw[: len(raw) // 3])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    old = tmp_path / "old.ckpt"
    data = torch.load(ckpt, weights_only=True)
    data["bundlenet"]["version"] = "7.0.0"
    torch.save(data, old)
    return {"truncated": truncated, "garbage": garbage, "foreign": foreign, "old": old}


SAMPLE_CASES = [
    (["base_points=[[4.5,0.0,1.0]]"], "base points must have dimension 2 (u, v), got dimension 3"),
    (["base_points=[4.5]"], "base points must have dimension 2 (u, v), got dimension 1"),
    (["base_points=[[nan,0.0]]"], "base point 0 contains NaN or inf"),
    (["base_points=[[4.5,inf]]"], "base point 0 contains NaN or inf"),
    (["base_points=[[4.5,abc]]"], "base_points must be a list of 2-number lists (u,v)"),
    (["base_points=[[4.5,0.0]]", "num_samples=0"], "num_samples must be a positive integer, got 0"),
    (["base_points=[[4.5,0.0]]", "num_samples=-5"], "num_samples must be a positive integer, got -5"),
    ([], "give exactly one of base_points"),
    (["base_points=[[4.5,0.0]]", "base_points_file=points.csv"], "give exactly one of base_points"),
    (["base_points_file=/nonexistent/points.csv"], "base_points_file not found"),
    (["ckpt_path=/nonexistent/last.ckpt", "base_points=[[4.5,0.0]]"], "checkpoint not found: /nonexistent/last.ckpt"),
]


@pytest.mark.parametrize(("overrides", "message"), SAMPLE_CASES, ids=[c[1][:40] for c in SAMPLE_CASES])
def test_sample_rejects_bad_input(tmp_path: Path, trained, overrides: list[str], message: str) -> None:
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained
    (tmp_path / "keep.txt").write_text("existing\n")
    before = snapshot(tmp_path)
    cfg = sample_cfg(tmp_path, ckpt, *overrides)
    with pytest.raises(BundleNetError) as info:
        sample(cfg)
    assert message in one_line(info.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("a,b\n1,2\n", "lacks column(s) ['u', 'v']; its header is ['a', 'b']"),
        ("u,v\n1,x\n", "non-numeric or short row"),
    ],
)
def test_sample_rejects_bad_base_points_file(tmp_path: Path, trained, content: str, message: str) -> None:
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained
    points = tmp_path / "points.csv"
    points.write_text(content)
    with pytest.raises(InputError) as info:
        sample(sample_cfg(tmp_path, ckpt, f"base_points_file={points}"))
    assert message in one_line(info.value)
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("truncated", "cannot read checkpoint"),
        ("garbage", "cannot read checkpoint"),
        ("foreign", "is not a bundlenet checkpoint"),
        ("old", "was written by bundlenet 7.0.0, incompatible"),
    ],
)
def test_bad_checkpoints_are_one_clear_error(tmp_path: Path, trained, variant: str, message: str) -> None:
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained
    path = write_checkpoint_variants(tmp_path, ckpt)[variant]
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError) as info:
        sample(sample_cfg(tmp_path, path, "base_points=[[4.5,0.0]]"))
    assert message in one_line(info.value)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert snapshot(tmp_path) == before


def test_existing_output_is_never_replaced(tmp_path: Path, trained) -> None:
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    with pytest.raises(InputError, match="exists; choose another output= or pass overwrite=true"):
        sample(sample_cfg(tmp_path, ckpt, "base_points=[[4.5,0.0]]"))
    assert out.read_text() == "precious\n"
    sample(sample_cfg(tmp_path, ckpt, "base_points=[[4.5,0.0]]", "overwrite=true", "num_samples=3"))
    assert len(out.read_text().splitlines()) == 4


# ----------------------------------------------------------------------------- Python API
def test_training_data_with_nan_or_inf_is_refused() -> None:
    model, dm = make_torus_model()
    total, base = dm.train_tensors()
    for bad in (float("nan"), float("inf")):
        broken = total.clone()
        broken[7, 1] = bad
        with pytest.raises(InputError, match="training point 7 contains NaN or inf"):
            model.fit_data(broken, base)


def test_far_base_point_warns_with_its_values_and_still_samples(trained, caplog: pytest.LogCaptureFixture) -> None:
    model, _, _ = trained
    with caplog.at_level(logging.WARNING, logger="bundlenet"):
        x = model.sample_fiber([[40.0, 0.0], [4.5, 0.0]], 5, seed=0)
    assert x.shape == (2, 5, 3) and torch.isfinite(x).all()
    far = [r.getMessage() for r in caplog.records if "extrapolated" in r.getMessage()]
    assert len(far) == 1 and "base point 0 (u=40, v=0)" in far[0] and "training range: u " in far[0]


def test_tiny_neighbourhoods_after_kmeans_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    from bundlenet.nn.cover import Cover

    base = torch.cat([torch.randn(200, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([[50.0, 50.0]])])
    with caplog.at_level(logging.WARNING, logger="bundlenet"):
        sizes = Cover(4, 2).fit(base)
    assert int(sizes.min()) == 1
    assert any("fewer than 2 training points; lower model.num_nbhds" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- round 3: options, tables, run dirs
def uniform_table(path: Path, header: str = "x1,x2,x3,y", cells: dict[int, str] | None = None, rows: int = 120) -> Path:
    """A table of values in [-1, 1]; ``cells`` replaces whole lines (line 1 is the header)."""
    gen = torch.Generator().manual_seed(0)
    lines = [header, *(",".join(f"{v:.4f}" for v in row) for row in (torch.rand(rows, 4, generator=gen) * 2 - 1).tolist())]
    for line, text in (cells or {}).items():
        lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


TRAIN_CASES_3 = [
    (["trainer.max_steps=0"], "trainer.max_steps must be a positive integer (or -1: no limit), got 0"),
    (["trainer.max_steps=abc"], "trainer.max_steps must be a positive integer (or -1: no limit), got 'abc'"),
    (["trainer.max_steps=-1", "trainer.max_epochs=0"], "trainer.max_epochs must be a positive integer"),
    (["seed=abc"], "seed must be an integer (or null), got 'abc'"),
    (["evaluation.seed=1.5"], "evaluation.seed must be an integer (or null), got 1.5"),
    (["data.fiber_circles=5"], "data.fiber_circles=5 needs 10 total columns (2 per circle), the data has 3"),
    (["data.fiber_span=10"], "data.fiber_span=10 exceeds the 3 total column(s) (x, y, z)"),
    (["data.fiber_circles=1", "data.fiber_span=1"], "data.fiber_circles=1 needs data.fiber_span >= 2"),
    (["ckpt_path=last"], "ckpt_path=last but {out}/checkpoints/last.ckpt does not exist: nothing to resume"),
    (
        ["data=csv", "data.path={tmp}/big.csv", "data.base_columns=[y]"],
        "column 'x1' of {tmp}/big.csv has the extreme value 1e+30 on line 52",
    ),
    (
        ["data=csv", "data.path={tmp}/big.csv", "data.base_columns=[y]", "data.scaling=standard"],
        "has the extreme value 1e+30 on line 52",
    ),
    (
        ["data=csv", "data.path={tmp}/inf.csv", "data.base_columns=[y]", "data.scaling=none"],
        "column 'x2' of {tmp}/inf.csv has the value inf on line 9",
    ),
    (["data=csv", "data.path={tmp}/dup.csv", "data.base_columns=[y]"], "the header names column 'x1' twice (columns 1 and 2)"),
    (["data=csv", "data.path={tmp}", "data.base_columns=[y]"], "data.path {tmp} is a folder, not a table"),
    (
        ["data=csv", "data.path={tmp}/big.csv", "data.base_columns=[y]", "data.extreme_values=sometimes"],
        "data.extreme_values must be error or keep",
    ),
]
if not torch.cuda.is_available():
    TRAIN_CASES_3.append(
        (["trainer=gpu"], "trainer.accelerator=gpu (trainer=gpu) but this machine or torch build has no CUDA GPU")
    )


@pytest.mark.parametrize(("overrides", "message"), TRAIN_CASES_3, ids=[c[1][:40] for c in TRAIN_CASES_3])
def test_train_refuses_options_and_tables_that_would_train_garbage(tmp_path: Path, overrides: list[str], message: str) -> None:
    from bundlenet.cli.train import train
    from bundlenet.errors import user_error

    uniform_table(tmp_path / "big.csv", cells={52: "1e30,0.1,0.2,0.3"})
    uniform_table(tmp_path / "inf.csv", cells={9: "0.1,inf,0.2,0.3"})
    uniform_table(tmp_path / "dup.csv", header="x1,x1,x3,y")
    out = tmp_path / "run"
    args = [a.format(tmp=tmp_path) for a in overrides]
    cfg = compose_cfg("train", [*args, "logger=none", *([] if "max_epochs" in " ".join(args) else ["trainer.max_epochs=1"])], out)
    with pytest.raises(Exception) as info:
        train(cfg)
    err = user_error(info.value)
    assert err is not None, f"not a user error: {info.value!r}"
    assert message.format(tmp=tmp_path, out=out) in one_line(err)
    assert not (out / "checkpoints").exists()


def test_a_directory_holding_a_run_is_refused_unless_resumed_or_overwritten(tmp_path: Path) -> None:
    from bundlenet.cli.train import prepare_run_dir
    from bundlenet.training import replace_previous_run

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "metrics.json").write_text("{}\n")
    (out / "checkpoints" / "best.ckpt").write_bytes(b"old best")
    (out / "checkpoints" / "last.ckpt").write_bytes(b"old last")
    (out / "checkpoints" / ".last.ckpt.k3j2.tmp").write_bytes(b"half a save")
    before = snapshot(out)
    with pytest.raises(InputError) as info:
        prepare_run_dir(out, None, overwrite=False)
    assert (
        f"run directory {out} holds a finished run (metrics.json, checkpoints/best.ckpt, checkpoints/last.ckpt); "
        "resume it with ckpt_path=last, replace it with overwrite=true"
    ) in one_line(info.value)
    assert snapshot(out) == {k: v for k, v in before.items() if not k.endswith(".tmp")}  # only the stale temporary file went
    assert prepare_run_dir(out, "last", overwrite=False) == str(out / "checkpoints" / "last.ckpt")
    assert prepare_run_dir(out, None, overwrite=True) is None
    assert snapshot(out) == {k: v for k, v in before.items() if not k.endswith(".tmp")}  # replaced only once built
    replace_previous_run(out)
    assert (
        not list((out / "checkpoints").iterdir()) and not (out / "metrics.json").exists()
    )  # no old best.ckpt left beside the new run


def test_overwrite_replaces_the_previous_run_from_the_first_process_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a ddp launcher's other ranks build while the first one already writes its new files
    from bundlenet.training import _prepare
    from tests.test_configs import compose_train

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "metrics.json").write_text("{}\n")
    cfg = compose_train(["overwrite=true", "data.num_train=100", "logger=none"], out)
    monkeypatch.setenv("LOCAL_RANK", "1")
    _prepare(cfg, out, None)
    assert (out / "metrics.json").is_file()
    monkeypatch.delenv("LOCAL_RANK")
    _prepare(cfg, out, None)
    assert not (out / "metrics.json").exists()


@pytest.mark.slow
def test_overwrite_with_bad_data_leaves_the_previous_run_whole(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "metrics.json").write_text("{}\n")
    (out / "checkpoints" / "last.ckpt").write_bytes(b"old last")
    before = snapshot(out)
    replace = ["overwrite=true", "logger=none", f"hydra.run.dir={out}"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "data=csv", "data.path=missing.csv", "data.base_columns=[y]", *replace],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: "), proc.stderr[-1000:]
    after = snapshot(out)
    assert {k: after[k] for k in before} == before  # the old run's checkpoint and metrics are kept


def test_a_killed_run_is_refused_too_and_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    from bundlenet.cli.train import prepare_run_dir

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    with pytest.raises(InputError, match="ckpt_path=last but .* does not exist: nothing to resume; check hydra.run.dir"):
        prepare_run_dir(out, "last", overwrite=False)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"killed at step 40")
    with pytest.raises(InputError, match="holds an unfinished run"):
        prepare_run_dir(out, None, overwrite=False)


def test_unset_mandatory_options_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    from omegaconf import OmegaConf

    from bundlenet.cli.common import run_cli

    cfg = OmegaConf.create({"data": {"path": "???"}})
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: cfg.data.path)
    assert info.value.code == 2 and capsys.readouterr().err == "error: data.path is required: pass data.path=...\n"


# ----------------------------------------------------------------------------- round 3: sample and evaluate
SAMPLE_CASES_3 = [
    (["base_points=[[4.5,0.0]]", "num_samples=true"], "num_samples must be a positive integer, got True"),
    (["base_points=[[4.5,0.0]]", "num_samples=2.5"], "num_samples must be a positive integer, got 2.5"),
    (["base_points=[[4.5,0.0]]", "output={tmp}"], "output {tmp} is a folder; give a file name"),
    (
        ["base_points=[[4.5,0.0]]", "output={tmp}/keep.txt/out.csv"],
        "cannot write output {tmp}/keep.txt/out.csv: {tmp}/keep.txt is not a writable folder",
    ),
    (["base_points=[[4.5,0.0]]", "device=tpu9"], "device=tpu9 is not a torch device; use device=cpu"),
    (["base_points=[[4.5,0.0]]", "seed=abc"], "seed must be an integer (or null), got 'abc'"),
]
if not torch.cuda.is_available():
    SAMPLE_CASES_3.append(
        (
            ["base_points=[[4.5,0.0]]", "device=cuda"],
            "device=cuda but this machine or torch build has no CUDA GPU; use device=cpu",
        )
    )


@pytest.mark.parametrize(("overrides", "message"), SAMPLE_CASES_3, ids=[c[1][:40] for c in SAMPLE_CASES_3])
def test_sample_refuses_before_sampling(tmp_path: Path, trained, overrides: list[str], message: str) -> None:
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained
    (tmp_path / "keep.txt").write_text("existing\n")
    before = snapshot(tmp_path)
    with pytest.raises(BundleNetError) as info:
        sample(sample_cfg(tmp_path, ckpt, *[o.format(tmp=tmp_path) for o in overrides]))
    assert message.format(tmp=tmp_path) in one_line(info.value)
    assert snapshot(tmp_path) == before


def test_api_num_samples_must_be_a_positive_int(trained) -> None:
    model, _, _ = trained
    for bad in (2.5, True, 0, "3"):
        with pytest.raises(InputError, match=f"num_samples must be a positive integer, got {bad!r}"):
            model.sample_fiber([[4.5, 0.0]], bad)
        with pytest.raises(InputError, match="num_samples must be a positive integer"):
            model.sample(bad)


def test_a_full_or_read_only_disk_at_write_time_is_one_line(tmp_path: Path, trained, monkeypatch: pytest.MonkeyPatch) -> None:
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained

    def full(path: object, writer: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("bundlenet.cli.common.write_with", full)
    with pytest.raises(
        InputError, match=r"cannot write output .*out.csv \(No space left on device\); free space or choose another output="
    ):
        sample(sample_cfg(tmp_path, ckpt, "base_points=[[4.5,0.0]]", "num_samples=3"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("nan", r"holds NaN or infinite weights \(.+\): its training diverged; use another checkpoint"),
        ("hparams", r"has no model options \(hyper_parameters is NoneType\)"),
    ],
)
def test_broken_checkpoints_are_one_line(tmp_path: Path, trained, edit: str, message: str) -> None:
    _, _, ckpt = trained
    data = torch.load(ckpt, weights_only=True)
    if edit == "nan":
        name = next(k for k, v in data["state_dict"].items() if v.is_floating_point() and v.numel() > 4 and "weight" in k)
        data["state_dict"][name][0] = float("nan")
    else:
        data["hyper_parameters"] = None
    path = tmp_path / f"{edit}.ckpt"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_model(path)
    one_line(info.value)


def test_a_truncated_checkpoint_message_is_short(tmp_path: Path, trained) -> None:
    _, _, ckpt = trained
    path = write_checkpoint_variants(tmp_path, ckpt)["truncated"]
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert len(one_line(info.value).replace(str(path), "")) < 100


def test_evaluate_writes_into_the_run_dir_and_never_replaces(tmp_path: Path, trained) -> None:
    from bundlenet.cli.evaluate import default_output, evaluate

    _, _, ckpt = trained
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    copy = run / "checkpoints" / "last.ckpt"
    copy.write_bytes(Path(ckpt).read_bytes())
    assert default_output(copy) == run / "evaluation_last.json"
    small = [
        "data=torus",
        "evaluation.iterations=1",
        "evaluation.num_global=100",
        "evaluation.global_ot_points=null",
        "evaluation.num_fibers=2",
        "evaluation.num_points=20",
        "evaluation.coverage_points=50",
    ]
    evaluate(compose_cfg("evaluate", [f"ckpt_path={copy}", *small], tmp_path))
    written = run / "evaluation_last.json"
    assert written.is_file() and not (tmp_path / "evaluation.json").exists()
    before = written.read_bytes()
    with pytest.raises(InputError, match=f"output {written} exists; choose another output= or pass overwrite=true"):
        evaluate(compose_cfg("evaluate", [f"ckpt_path={copy}", *small], tmp_path))
    assert written.read_bytes() == before
    evaluate(compose_cfg("evaluate", [f"ckpt_path={copy}", "overwrite=true", *small], tmp_path))


def test_evaluate_a_wildcard_evaluates_every_match_and_checks_all_outputs_first(tmp_path: Path, trained) -> None:
    from bundlenet.cli.evaluate import evaluate

    _, _, ckpt = trained
    for name in ("a", "b"):
        (tmp_path / "sweep" / name / "checkpoints").mkdir(parents=True)
        (tmp_path / "sweep" / name / "checkpoints" / "best.ckpt").write_bytes(Path(ckpt).read_bytes())
    small = ["data=torus", "evaluation.iterations=1", "evaluation.num_global=100", "evaluation.global_ot_points=null"]
    small += ["evaluation.num_fibers=2", "evaluation.num_points=20", "evaluation.coverage_points=50"]
    pattern = f"ckpt_path={tmp_path}/sweep/*/checkpoints/best.ckpt"
    with pytest.raises(InputError, match="matches 2 checkpoints; drop output="):
        evaluate(compose_cfg("evaluate", [pattern, f"output={tmp_path}/one.json", *small], tmp_path))
    with pytest.raises(InputError, match="no checkpoint matches ckpt_path=.*/nothing/\\*"):
        evaluate(compose_cfg("evaluate", [f"ckpt_path={tmp_path}/nothing/*", *small], tmp_path))
    kept = tmp_path / "sweep" / "b" / "evaluation_best.json"
    kept.write_text("{}")  # the second run's output exists: nothing is evaluated, nothing written
    with pytest.raises(InputError, match="exists"):
        evaluate(compose_cfg("evaluate", [pattern, *small], tmp_path))
    assert not (tmp_path / "sweep" / "a" / "evaluation_best.json").exists() and kept.read_text() == "{}"
    kept.unlink()
    results = evaluate(compose_cfg("evaluate", [pattern, *small], tmp_path))
    assert len(results) == 2
    for name in ("a", "b"):
        payload = json.loads((tmp_path / "sweep" / name / "evaluation_best.json").read_text())
        assert payload["checkpoint"].endswith(f"sweep/{name}/checkpoints/best.ckpt") and "w2" in payload["fiber"]
        assert payload["checkpoint_step"] == checkpoint_step(ckpt)


def test_sample_csv_keeps_discrete_and_point_mass_values_exactly(tmp_path: Path) -> None:
    import csv as csv_module

    from bundlenet.bundles.base import ColumnSupport
    from bundlenet.cli.sample import write_samples

    supports = (
        ColumnSupport(0.0, None, values=(90.0, 91.0)),
        ColumnSupport(0.0, None, atoms=(0.0,)),
        ColumnSupport(None, None, values=(0.1, 0.7)),
    )
    scale, offset = torch.tensor([0.1, 0.37, 0.06]), torch.tensor([89.5, 0.0, 0.1])
    scaled = torch.tensor([[5.0, 0.0, 0.0], [15.0, 3.3, 10.0]])  # 90, the atom 0, 0.1; 91, a continuous value, 0.7
    samples = (scaled * scale + offset).float()  # the float32 round trip of the model's output
    assert float(samples[0, 0]) != 90.0 or float(samples[1, 0]) != 91.0 or float(samples[1, 2]) != 0.7
    out = tmp_path / "s.csv"
    write_samples(out, torch.tensor([[1.0], [2.0]]), samples.unsqueeze(1), ("y",), ("age", "rain", "share"), supports)
    rows = list(csv_module.reader(out.open()))
    assert rows[1][1:] == ["90", "0", "0.1"] and rows[2][1] == "91" and rows[2][3] == "0.7", rows
    assert rows[2][2] == f"{float(samples[1, 1]):.7g}"  # continuous values keep 7 significant digits


def test_base_points_file_is_read_like_data_path(tmp_path: Path, trained) -> None:
    from bundlenet.cli.sample import read_base_points

    points = tmp_path / "points.csv"
    points.write_bytes("u;v\n4.5;0.0\n0.0;4.5\n".encode("utf-8-sig"))  # a BOM and semicolons, as spreadsheets write
    torch.testing.assert_close(read_base_points(points, ("u", "v")), torch.tensor([[4.5, 0.0], [0.0, 4.5]]))
    points.write_text("u,u\n1,2\n")
    with pytest.raises(InputError, match="names column 'u' twice"):
        read_base_points(points, ("u", "v"))
    with pytest.raises(InputError, match=f"base_points_file {tmp_path} is a folder"):
        read_base_points(tmp_path, ("u", "v"))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("evaluation.json", "{not json", "cannot read {run}/evaluation.json"),
        ("config.yaml", "a: [unclosed", "cannot read {run}/config.yaml"),
        ("config.yaml", "- just\n- a list\n", "{run}/config.yaml is not a run's config"),
    ],
)
def test_report_on_broken_run_records_is_one_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    from bundlenet.evaluation.report import find_runs

    run = tmp_path / "0"
    run.mkdir()
    (run / "config.yaml").write_text("data: {}\nmodel: {}\n")
    (run / "evaluation.json").write_text("{}\n")
    (run / name).write_text(content)
    with pytest.raises(InputError) as info:
        find_runs(tmp_path)
    assert message.format(run=run) in one_line(info.value)


# ----------------------------------------------------------------------------- round 3: the real command lines
def cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    command = [sys.executable, str(REPO / "train.py")] if module == "train" else [sys.executable, "-m", f"bundlenet.{module}"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


CLI_CASES = [
    pytest.param(
        "train",
        ["data=csv", "hydra.run.dir={tmp}/run"],
        "error: data.path is required: pass data.path=...",
        id="csv-no-path",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "train", ["hydra.run.dir={tmp}/finished"], "error: run directory {tmp}/finished holds a finished run", id="finished-run"
    ),
    pytest.param("sample", ["base_points=[[4.5,0.0]]"], "error: ckpt_path is required: pass ckpt_path=...", id="sample-no-ckpt"),
    pytest.param(
        "evaluate", [], "error: ckpt_path is required: pass ckpt_path=...", id="evaluate-no-ckpt", marks=pytest.mark.slow
    ),
    pytest.param(
        "train",
        ["data=csv", "data.path={tmp}/big.csv", "hydra.run.dir={tmp}/run"],
        "error: data.base_columns is required: pass data.base_columns=...",
        id="csv-no-base",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "train",
        ["trainer=gpu", "hydra.run.dir={tmp}/run"],
        "error: trainer.accelerator=gpu (trainer=gpu) but",
        id="gpu",
        marks=[pytest.mark.slow, pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")],
    ),
    pytest.param(
        "train",
        ["ckpt_path=last", "hydra.run.dir={tmp}/typo"],
        "error: ckpt_path=last but {tmp}/typo/checkpoints/last.ckpt does not exist",
        id="resume-typo",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "train",
        ["hydra.run.dir={tmp}/fibers.csv/run"],
        "error: cannot write the run directory {tmp}/fibers.csv/run",
        id="unwritable-run-dir",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "train", ["seed=abc", "hydra.run.dir={tmp}/run"], "error: seed must be an integer", id="seed", marks=pytest.mark.slow
    ),
]


@pytest.mark.parametrize(("module", "args", "message"), CLI_CASES)
def test_command_lines_give_one_error_line_and_exit_2(tmp_path: Path, module: str, args: list[str], message: str) -> None:
    (tmp_path / "fibers.csv").write_text("precious\n")  # a folder with an earlier sample output
    uniform_table(tmp_path / "big.csv")
    finished = tmp_path / "finished"
    (finished / ".hydra").mkdir(parents=True)
    (finished / "metrics.json").write_text("{}\n")
    (finished / ".hydra" / "config.yaml").write_text("the finished run's config\n")
    before = snapshot(tmp_path)
    proc = cli(module, *[a.format(tmp=tmp_path) for a in args], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(tmp=tmp_path)), proc.stderr[-2000:]
    assert {k: v for k, v in snapshot(tmp_path).items() if k in before} == before  # no existing file changed
    assert not (finished / ".lock").exists() and not (tmp_path / "typo").exists()


def test_resuming_another_model_class_names_both(trained) -> None:
    from bundlenet.models.baselines.cfm import ConditionalFlowMatching
    from bundlenet.training import _check_model_class

    model, dm, ckpt = trained
    _check_model_class(model, str(ckpt))  # the same class: fine
    with pytest.raises(
        CheckpointError,
        match=r"holds a BundleNet model, this run trains a ConditionalFlowMatching; resume with the checkpoint's model=",
    ):
        _check_model_class(ConditionalFlowMatching(dm.spec), str(ckpt))


def test_evaluating_on_other_data_names_the_columns_not_the_specs() -> None:
    from bundlenet import MoebiusBand, Torus
    from bundlenet.evaluation.protocol import Protocol, evaluate_model
    from tests.test_evaluation import OracleModel

    with pytest.raises(InputError) as info:
        evaluate_model(OracleModel(Torus()), MoebiusBand(), Protocol(iterations=1, num_global=50, num_fibers=2, num_points=20))
    text = one_line(info.value)
    assert "BundleSpec(" not in text and len(text) < 250, text
    assert "columns (x, y, z) over (u, v) from Torus" in text and "pass the data= the model was trained on" in text


def test_a_run_directory_as_ckpt_path_reads_the_model_the_run_reported(tmp_path: Path, trained) -> None:
    """``ckpt_path=<run dir>``: the checkpoint its ``metrics.json`` names, found in the run's own
    ``checkpoints/`` (a moved run); a directory that is not a finished run is one error line."""
    import json

    from bundlenet.checkpoint import run_checkpoint
    from bundlenet.cli.evaluate import checkpoints
    from bundlenet.cli.sample import sample

    _, _, ckpt = trained
    run = tmp_path / "moved_run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(Path(ckpt).read_bytes())
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not this one")
    with pytest.raises(CheckpointError, match="is a directory without metrics.json .*give a checkpoint file"):
        run_checkpoint(run)
    (run / "metrics.json").write_text(json.dumps({"checkpoint": None}))
    with pytest.raises(CheckpointError, match="names no checkpoint"):
        run_checkpoint(run)
    (run / "metrics.json").write_text(json.dumps({"checkpoint": "/where/it/was/trained/checkpoints/best.ckpt"}))
    assert run_checkpoint(run) == run / "checkpoints" / "best.ckpt"
    assert checkpoints(str(run)) == [run / "checkpoints" / "best.ckpt"]
    assert checkpoints(f"{tmp_path}/moved_*/") == [run / "checkpoints" / "best.ckpt"]  # a wildcard of run directories
    out = sample(sample_cfg(tmp_path, run, "base_points=[[4.5,0.0]]", "num_samples=5"))
    assert len(out.read_text().strip().splitlines()) == 6
