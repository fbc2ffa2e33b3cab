"""The docs' figures and tables, regenerated from runs: ``python -m bundlenet.report --docs --runs DIR``.

A manifest (``docs/results/manifest.yaml``) lists

- ``sweeps``: each one's directory under DIR (its name) and the commands that make it, with
  ``{runs}`` standing for DIR (``python train.py -m ... hydra.sweep.dir={runs}/NAME``);
- ``snippets``: Markdown files (under ``docs/results/``) that the pages include, each one of the
  kinds in :data:`KINDS`, made from some sweeps with a filter (``data``, ``models``, ``budget``);
- ``figures``: images under ``docs/`` redrawn or copied from the runs.

Every snippet starts with one line that names the command, the date it was written, and the
commit of the runs (``RUN/provenance.json``, written by ``train.py``; for runs without one it
says so and gives the date of their files). With ``run_missing``, the commands of a sweep whose
directory is missing are run first, so one command regenerates everything from nothing.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from bundlenet.errors import InputError
from bundlenet.evaluation.protocol import Estimate
from bundlenet.evaluation.report import (
    DATA_ORDER,
    MODEL_ORDER,
    TIME_METRICS,
    Curve,
    Run,
    _order,
    _read,
    _seed_summary,
    find_runs,
    plot_time_curves,
    plus_minus,
    significant,
    time_curves,
    time_table,
)
from bundlenet.io import write_text
from bundlenet.provenance import PROVENANCE_FILE

log = logging.getLogger("bundlenet.evaluation.docs")


@dataclass(frozen=True)
class Sweep:
    """A directory of runs under the runs root and the commands that make it."""

    name: str
    commands: tuple[str, ...]


@dataclass(frozen=True)
class Output:
    """A snippet or a figure: its path (relative to the docs folder), kind, sweeps and filter."""

    path: str
    kind: str
    sweeps: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.yaml``."""

    path: Path
    sweeps: dict[str, Sweep]
    snippets: tuple[Output, ...]
    figures: tuple[Output, ...]
    runs_label: str = "multirun/docs"  # what {runs} reads as in the commands shown on the pages


def load_manifest(path: Path) -> Manifest:
    """Parse and check the manifest; every snippet and figure names known sweeps and a known kind."""
    if not path.is_file():
        raise InputError(f"manifest not found: {path}; pass --manifest docs/results/manifest.yaml from the repository root")
    raw = _read(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("sweeps"), dict):
        raise InputError(f"{path} needs a 'sweeps' mapping (name: {{commands: [...]}})")
    sweeps = {}
    for name, entry in raw["sweeps"].items():
        commands = (entry or {}).get("commands") if isinstance(entry, dict) else None
        if not commands or not all(isinstance(c, str) for c in commands):
            raise InputError(f"{path}: sweep {name} needs 'commands', a list of command lines")
        sweeps[str(name)] = Sweep(str(name), tuple(commands))

    def outputs(key: str, kinds: dict[str, Any]) -> tuple[Output, ...]:
        found = []
        for item in raw.get(key) or []:
            if not isinstance(item, dict) or "path" not in item or item.get("kind") not in kinds:
                raise InputError(f"{path}: each of '{key}' needs a path and a kind (one of {', '.join(kinds)}): {item}")
            names = tuple(item.get("sweeps") or ())
            unknown = [n for n in names if n not in sweeps]
            if unknown:
                raise InputError(f"{path}: {item['path']} names unknown sweeps {unknown}; add them under 'sweeps'")
            options = {k: v for k, v in item.items() if k not in ("path", "kind", "sweeps")}
            found.append(Output(str(item["path"]), str(item["kind"]), names, options))
        return tuple(found)

    kinds = {**KINDS, **dict.fromkeys(OTHER_KINDS)}
    runs_label = str(raw.get("runs_label", "multirun/docs"))
    return Manifest(path, sweeps, outputs("snippets", kinds), outputs("figures", dict.fromkeys(FIGURES)), runs_label)


# ----------------------------------------------------------------------------- provenance of runs
def runs_provenance(run_dirs: list[Path]) -> str:
    """'at commit SHA' (or the commits) of the runs, or an honest line when they did not record one."""
    commits: dict[str, bool] = {}
    unrecorded = []
    for run in run_dirs:
        path = run / PROVENANCE_FILE
        record = _read(path) if path.is_file() else None
        if not isinstance(record, dict) or not record.get("commit"):
            unrecorded.append(run)
        else:
            commits[str(record["commit"])] = commits.get(str(record["commit"]), False) or bool(record.get("dirty"))
    parts = []
    if commits:
        shown = ", ".join(f"{c[:12]}{' (with uncommitted changes)' if dirty else ''}" for c, dirty in sorted(commits.items()))
        parts.append(f"at commit {shown}")
    if unrecorded:
        days = sorted({_file_day(r) for r in unrecorded})
        span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
        who = "" if not commits else f"{len(unrecorded)} of them "
        parts.append(f"{who}at a commit they did not record (runs of {span}, from their files' dates)")
    return " and ".join(parts)


def _file_day(run: Path) -> str:
    files = [p for p in (run / "evaluation.json", run / "metrics.json", run / "config.yaml") if p.is_file()]
    stamp = max(p.stat().st_mtime for p in files) if files else run.stat().st_mtime
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).date().isoformat()


def header(command: str, sources: str) -> str:
    """The first line of every snippet."""
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return f"*Made by `{command}` on {today} {sources}.*"


# ----------------------------------------------------------------------------- snippet kinds
def _select(runs: list[Run], options: dict[str, Any], keep_overrides: bool = False) -> list[Run]:
    """The runs of the output's data sets and models, each known by its data set, model and seed
    only (unless ``keep_overrides``): the docs' sweeps give each model one configuration, and their
    commands' other overrides (which differ between sweeps made by different commands) would split
    a model's rows; ``keep`` names other overrides to keep (for example ``[data.base]``: the
    digits' bases, each a data set of its own). ``where`` keeps only the runs whose overrides
    hold the given values (for example ``{data.base: ink}``: one of a sweep's bases)."""
    data, models = options.get("data"), options.get("models")
    where = {str(k): str(v) for k, v in (options.get("where") or {}).items()}
    kept = {"seed", *(str(k) for k in options.get("keep") or [])}
    return [
        r if keep_overrides else replace(r, overrides={k: v for k, v in r.overrides.items() if k in kept})
        for r in runs
        if (not data or r.data in data)
        and (not models or r.model in models)
        and all(r.overrides.get(k) == v for k, v in where.items())
    ]


def _fmt(value: float, half: float | None = None, bold: bool = False) -> str:
    text = significant(value)
    text = f"**{text}**" if bold else text
    return text + plus_minus(half)


def budget_table(runs: list[Run], options: dict[str, Any]) -> str:
    """One row per data set and model at ``options['budget']`` seconds (or at the end of training
    when the runs stopped first): the mean training steps reached, and each metric's mean ± 95%
    t-interval half-width over seeds; best in bold."""
    budget = float(options.get("budget", 300))
    curves = time_curves(_select(runs, options))
    metrics = [m for m in TIME_METRICS if any(c.metric == m[0] for c in curves)]
    points: dict[tuple[str, str], dict[str, tuple[Curve, int]]] = {}
    for c in curves:
        at = [i for i, b in enumerate(c.budgets) if b == budget and not (c.end and i == len(c.budgets) - 1)]
        index = at[0] if at else (len(c.budgets) - 1 if c.end else None)
        if index is not None:
            points.setdefault((c.data, c.model), {})[c.metric] = (c, index)
    if not points:
        raise InputError(f"no run reached the {budget:g} s budget; check the sweeps' budgets (callbacks.budgets)")
    best: dict[tuple[str, str], float] = {}
    for (data, _), row in points.items():
        for metric, (c, i) in row.items():
            best[(data, metric)] = min(best.get((data, metric), math.inf), c.mean[i])
    header_cells = ["data", "model", "steps", *[m[2] for m in metrics], "seeds"]
    lines = ["| " + " | ".join(header_cells) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header_cells) - 2)) + "|"]
    for data, model in sorted(points, key=lambda k: (_order(k[0], DATA_ORDER), _order(k[1].split(" ")[0], MODEL_ORDER), k[1])):
        row = points[(data, model)]
        models_here = sum(1 for d, _ in points if d == data)
        cells = []
        for metric, _, _ in metrics:
            if metric not in row:
                cells.append("")
                continue
            c, i = row[metric]
            cells.append(_fmt(c.mean[i], c.half_width[i], bold=models_here > 1 and c.mean[i] == best[(data, metric)]))
        first, index = next(iter(row.values()))
        lines.append("| " + " | ".join([data, model, f"{first.steps[index]:.0f}", *cells, str(first.seeds)]) + " |")
    return "\n".join(lines)


def budgets_table(runs: list[Run], options: dict[str, Any]) -> str:
    """The report's quality-against-time table of the selected runs (every budget)."""
    return time_table(time_curves(_select(runs, options)))


@dataclass(frozen=True)
class Column:
    """A column of a runs table: a metric of the run's evaluation, its ``ratio`` to the floor or
    its ``mean``, or (``part="metrics"``) a number of the run's ``metrics.json``; shown ``plain``
    (3 significant digits), as a ``percent`` or as an ``integer``; the lowest of a group in bold
    when ``lower_is_better``."""

    metric: str
    part: str = "ratio"
    heading: str = ""
    format: str = "plain"
    lower_is_better: bool = True

    @classmethod
    def coerce(cls, item: Any) -> Column:
        if isinstance(item, Column):
            return item
        if not isinstance(item, dict) or "metric" not in item or item.get("part", "ratio") not in ("ratio", "mean", "metrics"):
            raise InputError(f"a runs table's column needs a metric and a part (ratio, mean or metrics): {item}")
        return cls(**item)

    def value(self, results: dict[str, Any], metrics: dict[str, Any]) -> float | None:
        if self.part == "metrics":
            v = metrics.get(self.metric)
        else:
            entry = results.get(self.metric) or {}
            v = entry.get("ratio") if self.part == "ratio" else (entry.get("model") or {}).get("mean")
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    def floor(self, results: dict[str, Any]) -> str:
        """The noise floor's cell: 1 for a ratio, the floor's mean for a mean, nothing for metrics."""
        if self.part == "ratio":
            return "1"
        v = ((results.get(self.metric) or {}).get("noise_floor") or {}).get("mean")
        return self.show(float(v)) if self.part == "mean" and isinstance(v, (int, float)) else ""

    def show(self, v: float, bold: bool = False) -> str:
        """``v`` to 3 significant digits, trailing zeros kept (1.00, 0.950, 13.0%)."""
        scaled = 100 * v if self.format == "percent" else v
        text = f"{scaled:.0f}" if self.format == "integer" else significant(scaled)
        text += "%" if self.format == "percent" else ""
        return f"**{text}**" if bold else text

    def plus_minus(self, half: float | None) -> str:
        """`` ± half`` in the column's own units (percentage points for a percent column)."""
        if self.format != "percent" or half is None:
            return plus_minus(half)
        text = plus_minus(100 * half)
        return text + "%" if text else text


EXACT_COLUMNS = (
    Column("w2", "ratio", "fiber W2 / floor"),
    Column("precision", "mean", "precision"),
    Column("coverage", "ratio", "coverage / floor"),
    Column("resimulation", "mean", "re-simulation error ‖π(x̂) − y‖"),
)


def _options_label(run: Run) -> str:
    """A run's model options (its ``model.*`` overrides) as a row label, or ``defaults``."""

    def value(v: str) -> str:  # a multirun records booleans as Python writes them
        return {"True": "true", "False": "false"}.get(v, v)

    chosen = [f"`{k.removeprefix('model.')}={value(v)}`" for k, v in sorted(run.overrides.items()) if k.startswith("model.")]
    return ", ".join(chosen) or "defaults"


def _results(run: Run, options: dict[str, Any]) -> dict[str, Any]:
    """The evaluation a runs table reads for ``run``: its ``evaluation.json`` or the file that
    ``options['file']`` names (for every sweep, or per sweep as a mapping), at ``scope``."""
    file = options.get("file", "evaluation.json")
    if isinstance(file, dict):
        file = file.get(options.get("sweep_of", {}).get(run.path, run.path.parent.name), "evaluation.json")
    if file == "evaluation.json":
        data = run.evaluation
    else:
        path = run.path / str(file)
        if not path.is_file():
            raise InputError(f"{path} not found; run its sweep's evaluate command (or --run-missing on a missing sweep)")
        data = _read(path)
    return dict(data.get(str(options.get("scope", "fiber"))) or {})


def runs_table(runs: list[Run], options: dict[str, Any]) -> str:
    """One row per run: ``columns`` (:class:`Column`; default :data:`EXACT_COLUMNS`) of its
    evaluation (:func:`_results`), rows named by ``rows`` (``model``, or ``options``: the run's
    ``model.*`` overrides) and grouped by ``group`` (``sweep``, ``data`` or ``none``; ``labels``
    names the groups). ``floor``: the label of a last row per group holding the noise floor; the
    best of each column within a group in bold unless ``bold`` is false. With ``seeds``, the runs
    of one row label (a model trained with several seeds) make one row: each column's mean ± the
    95% t-interval half-width over the seeds, and a last column with their number."""
    columns = [Column.coerce(c) for c in options.get("columns") or EXACT_COLUMNS]
    group, labels = str(options.get("group", "sweep")), dict(options.get("labels") or {})
    by_options = options.get("rows", "model") == "options"
    groups: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    for run in _select(runs, options, keep_overrides=True):
        key = {"data": run.data, "none": ""}.get(group, options.get("sweep_of", {}).get(run.path, run.path.parent.name))
        label = _options_label(run) if by_options else run.model
        groups.setdefault(labels.get(key, key), []).append((label, _results(run, options), run.metrics))
    seeds = bool(options.get("seeds", False))
    head = (["data"] if group != "none" else []) + [
        "options" if by_options else "model",
        *[c.heading or c.metric for c in columns],
        *(["seeds"] if seeds else []),
    ]
    numeric = len(columns) + (1 if seeds else 0)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * (len(head) - numeric) + ["---:"] * numeric) + "|"]
    for name, rows in groups.items():
        rows.sort(key=lambda r: (r[0] != "defaults", r[0]) if by_options else _order(r[0], MODEL_ORDER))
        entries = _row_entries([(label, [c.value(res, met) for c in columns]) for label, res, met in rows], seeds)
        best = [min([x for _, v, _, _ in entries if (x := v[i]) is not None], default=None) for i in range(len(columns))]
        bold = bool(options.get("bold", True)) and len(entries) > 1
        for i, (label, values, halves, n) in enumerate(entries):
            cells = [
                "" if v is None else c.show(v, bold and c.lower_is_better and v == best[j]) + c.plus_minus(halves[j])
                for j, (c, v) in enumerate(zip(columns, values, strict=True))
            ]
            cells += [str(n)] if seeds else []
            lines.append("| " + " | ".join(([name if i == 0 else ""] if group != "none" else []) + [label, *cells]) + " |")
        if options.get("floor"):
            floor = [c.floor(rows[0][1]) for c in columns]
            lines.append("| " + " | ".join(([""] if group != "none" else []) + [str(options["floor"]), *floor]) + " |")
    return "\n".join(lines)


def _row_entries(
    rows: list[tuple[str, list[float | None]]], seeds: bool
) -> list[tuple[str, list[float | None], list[float | None], int]]:
    """``(label, values, half-widths, runs)`` per table row: each run as it is, or (``seeds``) the
    runs of one label as the mean and 95% t-interval half-width of each column (``None`` where no
    run has a value; a half-width NaN, not shown, for a single value)."""
    if not seeds:
        return [(label, values, [None] * len(values), 1) for label, values in rows]
    entries = []
    for label in dict.fromkeys(label for label, _ in rows):
        members = [values for lab, values in rows if lab == label]
        means: list[float | None] = []
        halves: list[float | None] = []
        for j in range(len(members[0])):
            column = [v[j] for v in members if v[j] is not None]
            if not column:
                means.append(None)
                halves.append(None)
                continue
            mean, half, _, _ = _seed_summary([cast(list[float], column)])  # half NaN for one seed
            means.append(mean[0])
            halves.append(half[0])
        entries.append((label, means, halves, len(members)))
    return entries


def exact_table(runs: list[Run], options: dict[str, Any]) -> str:
    """:func:`runs_table` of each run's ``exact.json`` (``python -m bundlenet.evaluate ...
    output=RUN/exact.json``: the final model against the bundle's exact fibers)."""
    return runs_table(runs, {"file": "exact.json", **options})


def evaluation_rows(runs: list[Run], options: dict[str, Any]) -> str:
    """The rows of one run's evaluation as ``train.py`` prints them (``options['scope']``, default
    ``fiber``; ``options['metrics']`` to choose), in a text block."""
    runs = _select(runs, options)
    if len(runs) != 1:
        raise InputError(f"an evaluation snippet needs one run, found {len(runs)}: give it a sweep of one train.py run")
    scope = str(options.get("scope", "fiber"))
    results = runs[0].evaluation.get(scope)
    if not isinstance(results, dict):
        raise InputError(f"{runs[0].path}/evaluation.json has no {scope} metrics (an unconditional model?)")
    names = options.get("metrics") or list(results)
    rows = [("scope", "metric", "model mean [95% CI]", "noise floor mean [95% CI]", "ratio")]
    for name in names:
        r = results[name]
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
        model, floor = (Estimate(r[k]["mean"], r[k].get("low"), r[k].get("high")).format() for k in ("model", "noise_floor"))
        rows.append((scope, name, model, floor, ratio))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "```text\n" + "\n".join(text) + "\n```"


KINDS: dict[str, Callable[[list[Run], dict[str, Any]], str]] = {
    "budget": budget_table,
    "budgets": budgets_table,
    "exact": exact_table,
    "runs": runs_table,
    "evaluation": evaluation_rows,
}
# snippets made without runs: a bash block of sweeps' commands, and rows of a benchmark.json
OTHER_KINDS = ("commands", "benchmark")
FIGURES = ("quality_vs_time", "copy")


def commands_block(manifest: Manifest, names: tuple[str, ...], runs_label: str) -> str:
    """A bash block of the sweeps' commands, ``{runs}`` written as ``runs_label``."""
    lines = [c.replace("{runs}", runs_label) for n in names for c in manifest.sweeps[n].commands]
    return "```bash\n" + "\n".join(lines) + "\n```"


def benchmark_rows(path: Path, rows: list[str]) -> str:
    """The per-model step table of a ``benchmark.json``."""
    data = _read(path)
    found = {r["name"]: r for r in data.get("rows", []) if "name" in r}
    missing = [r for r in rows if r not in found]
    if missing:
        raise InputError(f"{path} has no rows {missing}; run python -m bundlenet.benchmark --rows {' '.join(rows)}")
    lines = ["| row | model | parameters | s/step | steps/s | threads | load (1 min) |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in rows:
        r = found[name]
        lines.append(
            f"| `{name}` | `{r['model']}` | {r['parameters']:,} | {r['s_per_step']:.3f} | {r['steps_per_s']:.1f} "
            f"| {r['threads']} | {r['load_1min']:.2f} |"
        )
    return "\n".join(lines)


def _benchmark_sources(path: Path) -> str:
    record = _read(path).get("provenance") or {}
    if record.get("commit"):
        dirty = " (with uncommitted changes)" if record.get("dirty") else ""
        return f"from `benchmark.json` at commit {str(record['commit'])[:12]}{dirty}"
    day = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).date().isoformat()
    return f"from a `benchmark.json` that did not record its commit (written {day}, from its file's date)"


# ----------------------------------------------------------------------------- the command
def sweep_dir(runs_root: Path, name: str, overrides: dict[str, Path]) -> Path:
    return overrides.get(name, runs_root / name)


def run_sweep(sweep: Sweep, runs_root: Path, cwd: Path) -> None:
    """Run a sweep's commands (``python`` is this interpreter), from ``cwd`` (where ``train.py`` is)."""
    (runs_root / sweep.name).mkdir(parents=True, exist_ok=True)  # benchmark --output needs its folder
    for line in sweep.commands:
        argv = shlex.split(line.replace("{runs}", str(runs_root)))
        env = dict(os.environ)
        while argv and "=" in argv[0] and argv[0].split("=", 1)[0].isidentifier():  # VAR=value prefixes
            key, _, value = argv.pop(0).partition("=")
            env[key] = value
        if argv and argv[0] == "python":
            argv[0] = sys.executable
        log.info("sweep %s: %s", sweep.name, " ".join(argv))
        proc = subprocess.run(argv, cwd=cwd, env=env, check=False)
        if proc.returncode != 0:
            raise InputError(
                f"sweep {sweep.name}: `{line}` exited with {proc.returncode}; see its output above, fix it, remove {runs_root / sweep.name} and rerun"
            )


def write_outputs(
    manifest: Manifest,
    runs_root: Path,
    docs_dir: Path,
    command: str,
    run_missing: bool = False,
    overrides: dict[str, Path] | None = None,
    cwd: Path | None = None,
    only: list[str] | None = None,
) -> list[Path]:
    """Write every snippet and figure of the manifest (or those in ``only``); return their paths.

    A sweep whose directory is missing is run first with ``run_missing``; otherwise the outputs
    that need it are made from their other sweeps (the snippet says which are missing), and an
    output with none of its sweeps present is an error."""
    overrides = overrides or {}
    wanted = [o for o in (*manifest.snippets, *manifest.figures) if only is None or o.path in only]
    unknown = sorted(set(only or ()) - {o.path for o in wanted})
    if unknown:
        raise InputError(f"{unknown} not in {manifest.path}; pass one of its snippet or figure paths")
    needed = sorted({n for o in wanted if o.kind != "commands" for n in o.sweeps})
    for name in needed:
        if not sweep_dir(runs_root, name, overrides).exists() and run_missing:
            run_sweep(manifest.sweeps[name], runs_root, cwd or Path.cwd())
    for out in wanted:
        _write_output(manifest, out, runs_root, docs_dir / out.path, command, overrides)
    return [docs_dir / out.path for out in wanted]


def _write_output(
    manifest: Manifest, out: Output, runs_root: Path, target: Path, command: str, overrides: dict[str, Path]
) -> None:
    """Write one snippet or figure of the manifest to ``target`` (:func:`write_outputs`)."""
    if out.kind == "commands":
        text = (
            header(command, f"from `{manifest.path.name}`") + "\n\n" + commands_block(manifest, out.sweeps, manifest.runs_label)
        )
        write_text(target, text + "\n")
        return
    if out.kind == "benchmark":
        if len(out.sweeps) != 1:
            raise InputError(f"{manifest.path}: {out.path} needs one sweep, the one that writes its benchmark.json")
        bench = sweep_dir(runs_root, out.sweeps[0], overrides) / str(out.options.get("file", "benchmark.json"))
        if not bench.is_file():
            raise InputError(f"{bench} not found; pass --run-missing to run sweep {out.sweeps[0]} of {manifest.path}")
        write_text(
            target, header(command, _benchmark_sources(bench)) + "\n\n" + benchmark_rows(bench, list(out.options["rows"])) + "\n"
        )
        return
    present = [n for n in out.sweeps if sweep_dir(runs_root, n, overrides).exists()]
    missing = [n for n in out.sweeps if n not in present]
    if not present:
        raise InputError(
            f"{out.path}: none of its sweeps {list(out.sweeps)} is under {runs_root}; pass --run-missing to run them"
        )
    for name in missing:
        log.warning("%s: sweep %s not found under %s: its rows are left out", out.path, name, runs_root)
    by_sweep = {n: find_runs(sweep_dir(runs_root, n, overrides)) for n in present}
    runs = [r for n in present for r in by_sweep[n]]
    if out.kind in FIGURES:
        _figure(out, runs, target)
        return
    sources = "from runs " + runs_provenance([r.path for r in _select(runs, out.options)])
    if missing:
        sources += f"; the sweeps {', '.join(missing)} of `{manifest.path.name}` were not run, so their rows are missing"
    sweep_of = {r.path: n for n, members in by_sweep.items() for r in members}
    table = KINDS[out.kind](runs, {**out.options, "sweep_of": sweep_of})
    write_text(target, header(command, sources) + "\n\n" + table + "\n")


def _figure(out: Output, runs: list[Run], target: Path) -> None:
    if out.kind == "quality_vs_time":
        plot_time_curves(target, time_curves(_select(runs, out.options)))
        return
    chosen = _select(runs, out.options)
    if len(chosen) != 1:
        raise InputError(f"{out.path}: a copied figure needs one run, found {len(chosen)}; narrow its data/models")
    source = chosen[0].path / str(out.options["file"])
    if not source.is_file():
        raise InputError(f"{source} not found; rerun that run (train.py draws it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
