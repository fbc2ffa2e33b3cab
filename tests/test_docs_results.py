"""The docs' results come from runs: provenance of a run, the snippet writer of
``python -m bundlenet.report --docs``, and the pages' tables of numbers living in its snippets."""

from __future__ import annotations

import datetime
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from bundlenet.errors import InputError
from bundlenet.evaluation.docs import load_manifest, write_outputs
from bundlenet.provenance import provenance
from tests.conftest import REPO

MANIFEST = REPO / "docs" / "results" / "manifest.yaml"
SNIPPET = re.compile(r'^--8<-- "([^"]+)"\s*$', re.MULTILINE)
HEADER = re.compile(r"^\*Made by `python -m bundlenet\.report --docs --runs [^`]+` on \d{4}-\d\d-\d\d (from .+)\.\*$")


# ----------------------------------------------------------------------------- provenance
def test_provenance_of_this_checkout_names_its_commit() -> None:
    record = provenance()
    if record["commit"] is None:
        pytest.skip("the package is not in a git checkout here")
    assert re.fullmatch(r"[0-9a-f]{40}", record["commit"]) and isinstance(record["dirty"], bool)
    from bundlenet import __version__

    assert record["package"] == "bundlenet" and record["version"] == __version__
    date = datetime.datetime.fromisoformat(record["date"])
    assert date.utcoffset() == datetime.timedelta(0)


def test_provenance_outside_a_checkout_or_without_git_is_null(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = provenance(tmp_path)
    assert outside["commit"] is None and outside["dirty"] is None and outside["version"]
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the PATH
    missing = provenance(REPO)
    assert missing["commit"] is None and missing["dirty"] is None and missing["date"]


def test_training_writes_provenance_json(tmp_path: Path) -> None:
    from bundlenet import fit
    from tests.test_api import FAST, line_table

    fit(line_table(), base="y", run_dir=tmp_path / "run", evaluate=False, **FAST)
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert set(record) == {"package", "version", "commit", "dirty", "date"}
    assert record["commit"] == provenance()["commit"]


# ----------------------------------------------------------------------------- the snippet writer
def fiber(w2_ratio: float, precision: float) -> dict[str, Any]:
    def metric(mean: float, ratio: float | None) -> dict[str, Any]:
        return {"value": mean, "noise_floor": 1.0, "ratio": ratio}

    return {"w2": metric(w2_ratio, w2_ratio), "precision": metric(precision, None), "coverage": metric(1.2, 1.2)}


def estimate(mean: float) -> dict[str, Any]:
    return {"mean": mean, "low": mean * 0.9, "high": mean * 1.1}


def make_run(path: Path, data: str, model: str, seed: int, w2: list[float], commit: str | None = None) -> None:
    """A finished experiment=compare run as train.py leaves it (the files the report reads)."""
    (path / ".hydra").mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "data": {}, "model": {}}))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={model}", f"data={data}", f"seed={seed}"]))
    (path / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": {"data": data, "model": model}}}})
    )
    evaluation = {
        "protocol": {"iterations": 3},
        "fiber": {
            "w2": {"model": estimate(w2[-1]), "noise_floor": estimate(1.0), "ratio": w2[-1]},
            "precision": {"model": estimate(0.01), "noise_floor": estimate(1e-7), "ratio": None},
        },
        "global": {"w2": {"model": estimate(1.0), "noise_floor": estimate(1.0), "ratio": 1.0}},
    }
    (path / "evaluation.json").write_text(json.dumps(evaluation))
    (path / "metrics.json").write_text(json.dumps({"train_seconds": 40.0, "steps": 400, "fiber": fiber(w2[-1], 0.01)}))
    budgets = [
        {"budget_s": b, "step": 100 * (i + 1), "checkpoint": f"{path}/checkpoints/budget_{b:g}s.ckpt", "fiber": fiber(r, 0.01)}
        for i, (b, r) in enumerate(zip((10.0, 30.0), w2))
    ]
    (path / "budgets.json").write_text(json.dumps(budgets))
    if commit is not None:
        (path / "provenance.json").write_text(json.dumps({"commit": commit, "dirty": False, "date": "2026-01-01T00:00:00+00:00"}))


def write_manifest(folder: Path, extra_sweeps: dict[str, Any] | None = None) -> Path:
    manifest = {
        "runs_label": "multirun/docs",
        "sweeps": {
            "a": {"commands": ["python train.py -m experiment=compare model=bundlenet seed=0,1 hydra.sweep.dir={runs}/a"]},
            "b": {"commands": ["python train.py -m experiment=compare model=cfm seed=0,1 hydra.sweep.dir={runs}/b"]},
            **(extra_sweeps or {}),
        },
        "snippets": [
            {"path": "results/at_30.md", "kind": "budget", "budget": 30, "sweeps": ["a", "b"]},
            {"path": "results/every.md", "kind": "budgets", "sweeps": ["a", "b"], "models": ["bundlenet"]},
            {"path": "results/commands.md", "kind": "commands", "sweeps": ["a", "b"]},
        ],
    }
    path = folder / "docs" / "results" / "manifest.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(manifest))
    return path


@pytest.fixture
def sweeps(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    make_run(runs / "a" / "0", "torus", "bundlenet", 0, [1.5, 1.3], commit="0123456789abcdef" * 2 + "01234567")
    make_run(runs / "a" / "1", "torus", "bundlenet", 1, [1.7, 1.5], commit="0123456789abcdef" * 2 + "01234567")
    make_run(runs / "b" / "0", "torus", "cfm", 0, [2.0, 1.9])
    make_run(runs / "b" / "1", "torus", "cfm", 1, [2.2, 2.1])
    return runs


def test_snippets_have_the_header_line_and_the_table(sweeps: Path, tmp_path: Path) -> None:
    manifest = load_manifest(write_manifest(tmp_path))
    written = write_outputs(manifest, sweeps, tmp_path / "docs", "python -m bundlenet.report --docs --runs multirun/docs")
    assert [p.name for p in written] == ["at_30.md", "every.md", "commands.md"]
    at_30 = (tmp_path / "docs" / "results" / "at_30.md").read_text().splitlines()
    sources = HEADER.match(at_30[0])
    assert sources, at_30[0]
    # two runs recorded their commit, two did not: both said, the latter with their files' date
    assert "at commit 0123456789ab" in sources.group(1) and "2 of them at a commit they did not record" in sources.group(1)
    rows = [line for line in at_30 if line.startswith("| torus")]
    # the steps reached at 30 s, then the mean of 1.3 and 1.5: the best
    assert rows[0].startswith("| torus | bundlenet | 200 | **1.40** ± ") and rows[0].endswith("| 2 |")
    assert rows[1].startswith("| torus | cfm | ") and "| 2.00 ± " in rows[1]
    every = (tmp_path / "docs" / "results" / "every.md").read_text()
    assert "| torus | bundlenet | 10 | 100 | 1.60 ± " in every and "cfm" not in every and "at commit 0123456789ab." in every
    commands = (tmp_path / "docs" / "results" / "commands.md").read_text()
    assert "hydra.sweep.dir=multirun/docs/a\n" in commands and commands.startswith("*Made by ")


def test_a_missing_sweep_is_said_or_run(sweeps: Path, tmp_path: Path) -> None:
    make = f"{sys.executable} -c \"import shutil; shutil.copytree('{sweeps / 'b'}', '{{runs}}/c', dirs_exist_ok=True)\""
    manifest_path = write_manifest(tmp_path, {"c": {"commands": [make]}})
    text = manifest_path.read_text().replace("sweeps:\n  - a\n  - b\n", "sweeps:\n  - a\n  - c\n", 1)
    manifest_path.write_text(text)
    manifest = load_manifest(manifest_path)
    docs = tmp_path / "docs"
    write_outputs(manifest, sweeps, docs, "python -m bundlenet.report --docs --runs multirun/docs", only=["results/at_30.md"])
    first = (docs / "results" / "at_30.md").read_text()
    assert "the sweeps c of `manifest.yaml` were not run, so their rows are missing" in first and "| cfm |" not in first
    write_outputs(manifest, sweeps, docs, "cmd", run_missing=True, only=["results/at_30.md"])
    assert (sweeps / "c" / "0" / "budgets.json").is_file()
    again = (docs / "results" / "at_30.md").read_text()
    assert "| torus | cfm |" in again and "were not run" not in again


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--docs"], "--docs takes --runs DIR"),
        (["--docs", "--runs", "RUNS", "--manifest", "nowhere.yaml"], "manifest not found: nowhere.yaml"),
        (["--docs", "--runs", "RUNS", "--only", "results/nothing.md"], "['results/nothing.md'] not in"),
        (["--docs", "--runs", "EMPTY"], "none of its sweeps ['a', 'b'] is under"),
        (["--docs", "--runs", "RUNS", "--sweep-dir", "a"], "--sweep-dir a: give NAME=PATH"),
    ],
)
def test_docs_mode_bad_input_is_one_line(
    sweeps: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from bundlenet.cli.report import main

    manifest = write_manifest(tmp_path)
    (tmp_path / "empty").mkdir()
    argv = [{"RUNS": str(sweeps), "EMPTY": str(tmp_path / "empty")}.get(a, a) for a in argv]
    if "--manifest" not in argv:
        argv += ["--manifest", str(manifest)]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_a_manifest_naming_an_unknown_sweep_is_refused(tmp_path: Path) -> None:
    path = write_manifest(tmp_path)
    path.write_text(path.read_text().replace("  - b\n", "  - z\n", 1))
    with pytest.raises(InputError, match=r"names unknown sweeps \['z'\]"):
        load_manifest(path)


# ----------------------------------------------------------------------------- the pages
# Tables of options, defaults, definitions and commands: their numbers are settings, not results.
# (page, heading above the table, the table's header row)
SETTINGS_TABLES = {
    ("concepts.md", "Bundles and fibers", "| `data=` | total space E ⊂ R³ | base point in R² (ρ = 4.5) | fiber |"),
    ("configuration.md", "A quick try-out", "| override | effect |"),
    ("configuration.md", "`data`: what to learn", "| option | target | notes |"),
    ("configuration.md", "`data`: what to learn", "| key | synthetic default | table default | meaning |"),
    ("configuration.md", "`trainer`: the Lightning Trainer", "| key | default | meaning |"),
    ("configuration.md", "`callbacks`", "| name | what |"),
    ("configuration.md", "`experiment`: presets", "| option | what it sets |"),
    ("evaluation.md", "The protocol (`conf/evaluation/default.yaml`)", "| key | default | meaning |"),
    ("evaluation.md", "Metrics", "| metric | definition | ratio to floor |"),
    ("evaluation.md", "Which metric to read for what", "| question | read | a good model |"),
    ("evaluation.md", "Which checkpoint to use", "| file | holds | written |"),
    ("images.md", "Images: fibers of handwritten digits", "| `data.base` | π(x) | the fiber over y |"),
    ("index.md", "What `python train.py` writes", "| file | content |"),
    (
        "models.md",
        "BundleNet, the default { #bundlenet-the-default }",
        "| option (`conf/model/bundlenet.yaml`) | default | meaning |",
    ),
    ("models.md", "Baselines", "| `model=` | defaults (`conf/model/*.yaml`) |"),
    ("own-table.md", "Options (`conf/data/csv.yaml`)", "| option | default | meaning |"),
    ("own-table.md", "Supports: bounds, discrete values, point masses", "| option | default | meaning |"),
    ("performance.md", "Seconds per training step, model by model", "| row | what it measures |"),
    ("python.md", "Densities: `model.log_prob(x, y)`", "| model | what `log_prob` is |"),
    ("sampling.md", "The sample command", "| option | default | meaning |"),
}
# Results whose runs are not among the manifest's sweeps; each states the command that made it.
# The benchmark's full run (20 minutes of two cores).
STATED_COMMAND_TABLES = {
    ("performance.md", "Measurements", "| row (`--rows` name) | figure | reference (authors' code, 1 thread) |"),
    ("performance.md", "Scaling", "| points | s/step | s/epoch | peak RSS |"),
    ("performance.md", "Scaling", "| neighbourhoods | s/step (1000 points, full batch) |"),
}


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def numbered_tables(path: Path) -> list[tuple[str, str, int]]:
    """(heading, header row, line) of every Markdown table with a number outside code spans and links."""
    found: list[tuple[str, str, int]] = []
    seen: set[tuple[str, str]] = set()
    heading, header, fence = "", None, False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fence = not fence
        if fence:
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if not line.startswith("|"):
            header = None
            continue
        if header is None:
            header = line
            continue
        text = re.sub(r"https?://\S+", "", re.sub(r"`[^`]*`", "", line))
        if not re.fullmatch(r"\|[-:| ]+\|", line) and re.search(r"\d", text) and (heading, header) not in seen:
            seen.add((heading, header))
            found.append((heading, header, n))
    return found


@pytest.mark.parametrize("path", pages(), ids=lambda p: p.name)
def test_numbers_of_results_live_in_generated_snippets(path: Path) -> None:
    allowed = SETTINGS_TABLES | STATED_COMMAND_TABLES
    typed = [
        f"{path.name}:{n} under '{h}': {head}" for h, head, n in numbered_tables(path) if (path.name, h, head) not in allowed
    ]
    assert not typed, "tables of numbers typed into the page; generate them (docs/results/manifest.yaml):\n" + "\n".join(typed)


def test_the_allow_lists_name_tables_that_exist() -> None:
    present = {(p.name, h, head) for p in pages() for h, head, _ in numbered_tables(p)}
    stale = (SETTINGS_TABLES | STATED_COMMAND_TABLES) - present
    assert not stale, f"allow-listed tables no longer on the pages: {sorted(stale)}"


def test_every_snippet_a_page_includes_exists_and_is_in_the_manifest() -> None:
    manifest = load_manifest(MANIFEST)
    listed = {f"docs/{o.path}" for o in manifest.snippets}
    included = {m for p in pages() for m in SNIPPET.findall(p.read_text(encoding="utf-8"))}
    assert included, "no page includes a snippet"
    assert included <= listed, f"snippets not in {MANIFEST.name}: {sorted(included - listed)}"
    assert listed <= included, f"snippets of {MANIFEST.name} that no page includes: {sorted(listed - included)}"
    for snippet in sorted(included):
        lines = (REPO / snippet).read_text(encoding="utf-8").splitlines()
        assert HEADER.match(lines[0]), f"{snippet} does not start with its 'Made by' line: {lines[0]!r}"
    for figure in manifest.figures:
        assert (REPO / "docs" / figure.path).is_file(), figure.path


def test_a_typed_table_of_results_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "## Results\n\n| model | W2 |\n|---|---:|\n| `bundlenet` | 1.36 |\n\n"
        "## Options\n\n| key | default |\n|---|---|\n| `iterations` | `10` |\n\n"
        "```text\n| not | a table 1.0 |\n```\n"
    )
    assert numbered_tables(page) == [("Results", "| model | W2 |", 5)]


def test_exact_evaluation_benchmark_and_copied_figure(sweeps: Path, tmp_path: Path) -> None:
    for run, w2 in ((sweeps / "a" / "0", 1.2), (sweeps / "a" / "1", 1.05)):
        exact = {
            "fiber": {"w2": {"ratio": w2}, "precision": {"model": {"mean": 0.01}}, "resimulation": {"model": {"mean": 0.006}}}
        }
        (run / "exact.json").write_text(json.dumps(exact))
        (run / "fibers.png").write_bytes(b"png of " + run.name.encode())
    bench = tmp_path / "elsewhere"
    bench.mkdir()
    row = {"name": "train_cfm", "model": "cfm", "parameters": 265731, "s_per_step": 0.0331, "steps_per_s": 30.2}
    (bench / "benchmark.json").write_text(json.dumps({"rows": [{**row, "threads": 1, "load_1min": 0.8}]}))
    path = write_manifest(
        tmp_path, {"bench": {"commands": ["python -m bundlenet.benchmark --output {runs}/bench/benchmark.json"]}}
    )
    manifest = yaml.safe_load(path.read_text())
    manifest["snippets"] = [
        {"path": "results/exact.md", "kind": "exact", "sweeps": ["a"], "labels": {"a": "robot arm"}},
        {"path": "results/one.md", "kind": "evaluation", "sweeps": ["a"], "data": ["nowhere"]},
        {"path": "results/run.md", "kind": "evaluation", "sweeps": ["b"], "models": ["cfm"], "metrics": ["w2"]},
        {"path": "results/bench.md", "kind": "benchmark", "sweeps": ["bench"], "rows": ["train_cfm"]},
    ]
    manifest["figures"] = [{"path": "img/f.png", "kind": "copy", "file": "fibers.png", "sweeps": ["a"], "data": ["torus"]}]
    path.write_text(yaml.safe_dump(manifest))
    docs, cmd = tmp_path / "docs", "python -m bundlenet.report --docs --runs multirun/docs"
    loaded = load_manifest(path)
    write_outputs(loaded, sweeps, docs, cmd, only=["results/exact.md"], overrides={"a": sweeps / "a"})
    exact = (docs / "results" / "exact.md").read_text()
    assert "| robot arm | bundlenet | 1.20 | **0.0100** |  | **0.00600** |" in exact  # ties: both in bold
    assert "|  | bundlenet | **1.05** | **0.0100** |" in exact
    with pytest.raises(InputError, match="needs one run, found 0"):
        write_outputs(loaded, sweeps, docs, cmd, only=["results/one.md"])
    with pytest.raises(InputError, match="needs one run, found 2"):
        write_outputs(loaded, sweeps, docs, cmd, only=["results/run.md"])
    with pytest.raises(InputError, match="a copied figure needs one run, found 2"):
        write_outputs(loaded, sweeps, docs, cmd, only=["img/f.png"])
    (sweeps / "b" / "1" / "evaluation.json").unlink()  # an unfinished run is skipped
    write_outputs(loaded, sweeps, docs, cmd, only=["results/run.md"])
    run = (docs / "results" / "run.md").read_text()
    assert "```text\nscope  metric  model mean [95% CI]" in run and "fiber  w2      1.9 [1.71, 2.09]" in run
    with pytest.raises(InputError, match="pass --run-missing to run sweep bench"):
        write_outputs(loaded, sweeps, docs, cmd, only=["results/bench.md"])
    write_outputs(loaded, sweeps, docs, cmd, only=["results/bench.md"], overrides={"bench": bench})
    text = (docs / "results" / "bench.md").read_text()
    assert "did not record its commit" in text and "| `train_cfm` | `cfm` | 265,731 | 0.033 | 30.2 | 1 | 0.80 |" in text


def test_a_broken_provenance_record_names_its_file(sweeps: Path, tmp_path: Path) -> None:
    (sweeps / "a" / "0" / "provenance.json").write_text("{not json")
    manifest = load_manifest(write_manifest(tmp_path))
    with pytest.raises(InputError, match=r"cannot read .*a/0/provenance\.json"):
        write_outputs(manifest, sweeps, tmp_path / "docs", "cmd", only=["results/at_30.md"])


def test_docs_tables_know_a_run_by_its_data_model_and_seed() -> None:
    # sweeps made by different commands differ in overrides that do not tell models apart
    from bundlenet.evaluation.docs import _select
    from bundlenet.evaluation.report import Run

    runs = [
        Run(Path("a"), "torus", "cfm", {}, {}, {"seed": "0", "trainer.max_steps": "2000"}),
        Run(Path("b"), "torus", "cfm", {}, {}, {"seed": "1"}),
        Run(Path("c"), "wine", "cfm", {}, {}, {"seed": "0"}),
    ]
    assert [r.overrides for r in _select(runs, {"data": ["torus"]})] == [{"seed": "0"}, {"seed": "1"}]
    digits = [Run(Path("d"), "digits", "cfm", {}, {}, {"seed": "0", "data.base": "ink", "trainer.max_steps": "9"})]
    assert _select(digits, {"keep": ["data.base"]})[0].overrides == {"seed": "0", "data.base": "ink"}


def test_runs_table_rows_by_model_or_options_with_a_floor_row(tmp_path: Path) -> None:
    from bundlenet.evaluation.docs import runs_table
    from bundlenet.evaluation.report import Run

    def evaluation(w2: float, accuracy: float) -> dict[str, Any]:
        return {
            "fiber": {
                "w2": {"ratio": w2},
                "accuracy": {"model": {"mean": accuracy}, "noise_floor": {"mean": 0.973}, "ratio": None},
            }
        }

    runs = [
        Run(tmp_path / "d" / "1", "digits", "cfm", evaluation(1.22, 0.967), {"train_seconds": 186.4}, {"seed": "0"}),
        Run(tmp_path / "d" / "0", "digits", "bundlenet", evaluation(1.0, 0.992), {"train_seconds": 350.0}, {"seed": "0"}),
    ]
    columns = [
        {"metric": "w2", "heading": "fiber W2 / floor"},
        {"metric": "accuracy", "part": "mean", "format": "percent", "lower_is_better": False},
        {"metric": "train_seconds", "part": "metrics", "format": "integer", "heading": "training s"},
    ]
    table = runs_table(runs, {"columns": columns, "group": "none", "floor": "*real images (floor)*"}).splitlines()
    assert table[0] == "| model | fiber W2 / floor | accuracy | training s |"
    assert table[2:] == [
        "| bundlenet | **1.00** | 99.2% | 350 |",  # model order; only lower-is-better columns in bold
        "| cfm | 1.22 | 96.7% | **186** |",
        "| *real images (floor)* | 1 | 97.3% |  |",  # a ratio's floor is 1 by definition
    ]
    # rows named by their model options, grouped by data set; one sweep's numbers from another file
    arm = tmp_path / "arm" / "none"
    arm.mkdir(parents=True)
    (arm / "exact.json").write_text(json.dumps({"fiber": {"w2": {"ratio": 1.6}}}))
    options = [
        Run(tmp_path / "t" / "0", "torus", "bundlenet", evaluation(0.99, 0), {}, {"seed": "0", "model.fiber_context": "none"}),
        Run(tmp_path / "t" / "1", "torus", "bundlenet", evaluation(1.11, 0), {}, {"seed": "0"}),
        Run(tmp_path / "t" / "2", "torus", "bundlenet", evaluation(1.1, 0), {}, {"model.learn_widths": "True"}),
        Run(arm, "csv", "bundlenet", {}, {}, {"data.path": "arm.csv", "model.fiber_context": "none"}),
    ]
    sweep_of = {options[0].path: "synthetic", options[1].path: "synthetic", options[2].path: "synthetic", arm: "arm"}
    table = runs_table(
        options,
        {
            "columns": columns[:1],
            "rows": "options",
            "group": "data",
            "labels": {"csv": "robot arm"},
            "file": {"arm": "exact.json"},
            "sweep_of": sweep_of,
        },
    ).splitlines()
    assert table[2:] == [
        "| torus | defaults | 1.11 |",
        "|  | `fiber_context=none` | **0.990** |",
        "|  | `learn_widths=true` | 1.10 |",  # as typed, not as the multirun recorded it
        "| robot arm | `fiber_context=none` | 1.60 |",
    ]
    with pytest.raises(InputError, match="needs a metric and a part"):
        runs_table(runs, {"columns": [{"metric": "w2", "part": "median"}]})


def test_runs_table_over_seeds_and_a_filter_on_overrides(tmp_path: Path) -> None:
    from bundlenet.evaluation.docs import runs_table
    from bundlenet.evaluation.report import Run

    def run(name: str, model: str, seed: int, w2: float, base: str = "ink", resim: float | None = None) -> Run:
        fiber: dict[str, Any] = {"w2": {"ratio": w2}}
        if resim is not None:
            fiber["resimulation"] = {"model": {"mean": resim}}
        return Run(tmp_path / name, "digits", model, {"fiber": fiber}, {}, {"seed": str(seed), "data.base": base})

    runs = [
        run("a", "cfm", 0, 1.0, resim=0.1),
        run("b", "cfm", 1, 1.2),  # a metric missing in one seed is averaged over the others
        run("c", "cfm", 2, 1.4, resim=0.3),
        run("d", "bundlenet", 0, 1.1, resim=0.05),
        run("e", "bundlenet", 0, 9.0, base="label"),
    ]
    columns = [{"metric": "w2"}, {"metric": "resimulation", "part": "mean"}]
    table = runs_table(runs, {"columns": columns, "group": "none", "seeds": True, "where": {"data.base": "ink"}}).splitlines()
    assert table[0] == "| model | w2 | resimulation | seeds |"
    assert table[1] == "|---|---:|---:|---:|"
    # 1.0, 1.2, 1.4: mean 1.2, t(0.975, 2) · 0.2 / √3 = 0.497; 0.1, 0.3: t(0.975, 1) · 0.141 / √2 = 1.27;
    # one seed: no interval
    assert table[2:] == ["| bundlenet | **1.10** | **0.0500** | 1 |", "| cfm | 1.20 ± 0.5 | 0.200 ± 1.3 | 3 |"]
    # a percent column's half-width is in percentage points too: 0.1, 0.3 → 20.0% ± 127% (2 digits)
    percent = [{"metric": "resimulation", "part": "mean", "format": "percent"}]
    table = runs_table(runs, {"columns": percent, "group": "none", "seeds": True, "where": {"data.base": "ink"}}).splitlines()
    assert table[3] == "| cfm | 20.0% ± 1.3e+02% | 3 |"
