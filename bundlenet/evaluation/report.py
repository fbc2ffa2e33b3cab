"""Aggregate a multirun into Markdown tables (``python -m bundlenet.report MULTIRUN_DIR``).

Every run directory under MULTIRUN_DIR that holds ``config.yaml`` and ``evaluation.json`` (both
written by ``train.py``) becomes one row: its dataset, its model, every override that differs
between the runs (a sweep's parameters, the seed), each metric's mean with its 95% bootstrap
CI, and its run directory. Each dataset block starts with the noise floor (two true samples),
the best a perfect generator can expect; the best model mean of each column is in bold.

Runs with ``budgets.json`` (``experiment=compare``) also give the quality against training
time: per data set, model and budget, the mean over seeds with a 95% t-interval, as a table and
as the figure ``MULTIRUN_DIR/quality_vs_time.png``. The tables are printed and written to
``MULTIRUN_DIR/report.md``.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from omegaconf import OmegaConf
from yaml import YAMLError  # type: ignore[import-untyped]  # PyYAML, OmegaConf's parser

from bundlenet.errors import InputError
from bundlenet.evaluation.metrics import FIBER_SCORES, METRICS, CloudMetrics

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger("bundlenet.evaluation.report")

MODEL_ORDER = ("bundlenet", "bundlenet_paper", "cflow", "cfm", "forestflow", "cgan", "cgan_nbhd", "cgan_triv", "wgan")
DATA_ORDER = ("torus", "sliced_torus", "moebius", "wine", "airfoil", "csv")


@dataclass(frozen=True)
class Run:
    """One finished training run: its names, command-line overrides, evaluation, training
    metrics and (``experiment=compare``) the evaluations at each training-time budget."""

    path: Path
    data: str
    model: str
    evaluation: dict[str, Any]
    metrics: dict[str, Any]
    overrides: dict[str, str] = field(default_factory=dict)
    budgets: list[dict[str, Any]] = field(default_factory=list)


def _overrides(run_dir: Path) -> dict[str, str]:
    """``key=value`` overrides of a run (Hydra's ``.hydra/overrides.yaml``), without the
    ``data``/``model`` choices (their own columns) and Hydra's own keys."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    found = {}
    for item in _read(path) or []:
        key, _, value = str(item).lstrip("+~").partition("=")
        if key not in ("data", "model") and not key.startswith("hydra"):
            found[key] = value
    return found


def _choice(run_dir: Path, config: dict[str, Any], group: str) -> str:
    """The config-group option a run used: Hydra's record of its choices, else the class name."""
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        choice = OmegaConf.select(OmegaConf.create(_read(hydra_file)), f"hydra.runtime.choices.{group}")
        if choice:
            return str(choice)
    node = config.get(group) or {}
    target = str((node.get("bundle") or {}).get("_target_", "")) if group == "data" else ""
    return (target or str(node.get("_target_", "?"))).rsplit(".", 1)[-1]


def _read(path: Path) -> Any:
    """A run's JSON (``.json``) or YAML file, or a one-line :class:`InputError` naming it."""
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except (OSError, UnicodeDecodeError, ValueError, YAMLError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:80]
        raise InputError(f"cannot read {path} ({first}); fix or remove that run directory, or rerun it") from None


def find_runs(root: Path) -> list[Run]:
    """Every run under ``root`` with a ``config.yaml`` and an ``evaluation.json``."""
    if not root.is_dir():
        raise InputError(f"multirun directory not found: {root}; pass the hydra.sweep.dir of a train.py -m run")
    runs = []
    for config_path in sorted(root.rglob("config.yaml")):
        run_dir = config_path.parent
        evaluation_path = run_dir / "evaluation.json"
        if run_dir.name == ".hydra":
            continue
        if not evaluation_path.is_file():
            log.warning("skipping %s: no evaluation.json (unfinished run, or trainer.fast_dev_run)", run_dir)
            continue
        config = _read(config_path)
        if not isinstance(config, dict):
            raise InputError(f"{config_path} is not a run's config (a YAML mapping); remove or fix that run directory")
        metrics_path = run_dir / "metrics.json"
        runs.append(
            Run(
                path=run_dir,
                data=_choice(run_dir, config, "data"),
                model=_choice(run_dir, config, "model"),
                evaluation=_read(evaluation_path),
                metrics=_read(metrics_path) if metrics_path.is_file() else {},
                overrides=_overrides(run_dir),
                budgets=_read(run_dir / "budgets.json") if (run_dir / "budgets.json").is_file() else [],
            )
        )
    if not runs:
        raise InputError(f"no finished runs under {root}: each run dir needs config.yaml and evaluation.json from train.py")
    return runs


def _order(name: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(name) if name in order else len(order), name)


def significant(value: float) -> str:
    """A table cell's number: 3 significant digits with trailing zeros kept (1.10, 0.0500), and
    no exponent from 100 on (330, 2659)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:#.3g}".rstrip(".")


def plus_minus(half: float | None) -> str:
    """`` ± half`` to 2 significant digits, or nothing for ``None`` or NaN (a single seed)."""
    return f" ± {half:.2g}" if half is not None and math.isfinite(half) else ""


def _cell(estimate: dict[str, Any] | None, bold: bool = False) -> str:
    if not estimate or estimate.get("mean") is None or not math.isfinite(estimate["mean"]):
        return "n/a"
    text = significant(estimate["mean"])
    if bold:
        text = f"**{text}**"
    if estimate.get("low") is not None and estimate.get("high") is not None:
        text += f" [{significant(estimate['low'])}, {significant(estimate['high'])}]"
    return text


def varying(runs: list[Run]) -> list[str]:
    """Override keys whose values differ between runs (or that only some runs set)."""
    keys = sorted({k for r in runs for k in r.overrides})
    return [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]


Extra = tuple[str, str, bool]  # a fiber score's (name, column label, reported as model / floor)
_EXTRA: tuple[Extra, ...] = tuple((m.name, m.label, m.ratio) for m in FIBER_SCORES)


def scope_table(runs: list[Run], scope: str, root: Path | None = None) -> str:
    """One Markdown table of ``scope`` ('fiber' or 'global') metrics over all runs.

    Columns: data, model, every swept override, each metric's mean [95% CI], W2 over its noise
    floor, the fiber scores some run holds, training seconds and the run directory (relative to
    ``root`` when under it). Per data set (:func:`_data_sets`): a noise-floor row, then one row per
    run, the best model mean of each metric in bold when more than one run has the scope.
    """
    names = CloudMetrics.names()
    swept = varying(runs)
    extra = [e for e in _EXTRA if any(isinstance(r.evaluation.get(scope), dict) and e[0] in r.evaluation[scope] for r in runs)]
    lines = _table_head(swept, names, extra)
    for data, group in _data_sets(runs, swept):
        applicable = [r for r in group if isinstance(r.evaluation.get(scope), dict)]
        if applicable:
            lines.append(_floor_row(data, applicable[0].evaluation[scope], len(swept), names, extra))
        best = _best_means(applicable, scope, names)
        for run in group:
            cells = _metric_cells(run.evaluation.get(scope), names, extra, best, len(applicable) > 1)
            lines.append(_run_row(data, run, swept, cells, root))
    return "\n".join(lines)


def _table_head(swept: list[str], names: tuple[str, ...], extra: list[Extra]) -> list[str]:
    """The header line and the alignment line of :func:`scope_table` (names left, numbers right)."""
    header = ["data", "model", *swept, *[METRICS[n].label for n in names], "W2 / floor", *[e[1] for e in extra], "train s", "run"]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * (2 + len(swept)) + ["---:"] * (len(header) - 3 - len(swept)) + ["---"]) + "|",
    ]


def _named(name: str, overrides: dict[str, str], keys: list[str]) -> str:
    """A table's or a curve's label: ``name`` and each of ``keys`` with its value (``name key=value ...``)."""
    return name + "".join(f" {k}={overrides.get(k, '')}" for k in keys)


def _data_sets(runs: list[Run], swept: list[str]) -> list[tuple[str, list[Run]]]:
    """``(label, runs)`` per data set, in ``DATA_ORDER``; a swept data option (e.g. ``data.base``
    of digits) makes a data set of its own, with its own floor, labelled ``name key=value``. The
    runs of one are in ``MODEL_ORDER``, then by their swept values."""
    data_keys = [k for k in swept if k.startswith("data.")]
    by_data: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        by_data.setdefault((run.data, *(run.overrides.get(k, "") for k in data_keys)), []).append(run)
    return [
        (
            _named(key[0], dict(zip(data_keys, key[1:])), data_keys),
            sorted(by_data[key], key=lambda r: (_order(r.model, MODEL_ORDER), [r.overrides.get(k, "") for k in swept])),
        )
        for key in sorted(by_data, key=lambda d: (_order(d[0], DATA_ORDER), d[1:]))
    ]


def _floor_row(data: str, floor: dict[str, Any], num_swept: int, names: tuple[str, ...], extra: list[Extra]) -> str:
    """The *noise floor* row of a data set: each metric's two-true-samples value (``floor``, one
    run's scope results), 1 for W2 / floor and for the ratio scores, no seconds, no run."""
    floor_extra = [("1" if ratio else _cell(floor[n]["noise_floor"]) if n in floor else "") for n, _, ratio in extra]
    cells = [
        data,
        "*noise floor*",
        *[""] * num_swept,
        *[_cell(floor[n]["noise_floor"]) for n in names],
        "1",
        *floor_extra,
        "",
        "",
    ]
    return "| " + " | ".join(cells) + " |"


def _best_means(applicable: list[Run], scope: str, names: tuple[str, ...]) -> dict[str, float | None]:
    """Per metric, the lowest finite model mean over the runs that have ``scope`` (``None``: none)."""
    best = {}
    for n in names:
        means = [r.evaluation[scope][n]["model"]["mean"] for r in applicable]
        finite = [m for m in means if m is not None and math.isfinite(m)]
        best[n] = min(finite) if finite else None
    return best


def _metric_cells(
    results: Any, names: tuple[str, ...], extra: list[Extra], best: dict[str, float | None], bold_best: bool
) -> list[str]:
    """A run's metric cells: each metric's mean [CI] (bold where it is ``best`` and ``bold_best``),
    W2 / floor, then the fiber scores (a ratio or a value; empty where the run lacks one).
    Results that are not a mapping (an unconditional model has no fibers) read ``n/a``."""
    if not isinstance(results, dict):
        return ["n/a (unconditional)"] + [""] * (len(names) + len(extra))
    cells = [_cell(results[n]["model"], bold=results[n]["model"]["mean"] == best[n] and bold_best) for n in names]
    cells.append(_ratio(results["w2"]))
    for n, _, ratio in extra:
        cells.append("" if n not in results else _ratio(results[n]) if ratio else _cell(results[n]["model"]))
    return cells


def _run_row(data: str, run: Run, swept: list[str], cells: list[str], root: Path | None) -> str:
    """One run's row: data, model, its swept values, ``cells``, training seconds and its directory."""
    seconds = run.metrics.get("train_seconds")
    train = f"{seconds:.0f}" if isinstance(seconds, (int, float)) else ""
    where = str(run.path.relative_to(root)) if root is not None and run.path.is_relative_to(root) else str(run.path)
    return "| " + " | ".join([data, run.model, *[run.overrides.get(k, "") for k in swept], *cells, train, where]) + " |"


def _ratio(result: dict[str, Any]) -> str:
    model, floor = result["model"]["mean"], result["noise_floor"]["mean"]
    return f"{model / floor:.2f}" if model is not None and floor and math.isfinite(model) else ""


# ----------------------------------------------------------------------------- quality against time
TIME_METRICS = tuple((m.name, "ratio" if m.ratio else "value", m.over_time) for m in METRICS.values() if m.over_time)


@dataclass(frozen=True)
class Curve:
    """Mean, 95% t-interval and range (lowest, highest) over seeds of one metric, per budget, for
    one data set and model. With ``end``, the last point is not a budget but the end of training
    (runs that stopped before the next budget): its x is the runs' mean training seconds."""

    data: str
    model: str
    metric: str
    budgets: tuple[float, ...]
    mean: tuple[float, ...]
    half_width: tuple[float, ...]
    seeds: int
    steps: tuple[float, ...]
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    end: bool = False


def _reached(run: Run, budget: float) -> dict[str, Any] | None:
    """The run's budgets.json entry of ``budget`` when training reached it (its own
    ``budget_*s.ckpt``); ``None`` when the run stopped first (the entry holds the final model)."""
    entry = next((b for b in run.budgets if b["budget_s"] == budget), None)
    if entry is None or Path(str(entry.get("checkpoint", ""))).name != f"budget_{budget:g}s.ckpt":
        return None
    return entry


def _value(fiber: Any, metric: str, field_name: str) -> float | None:
    value = fiber.get(metric, {}).get(field_name) if isinstance(fiber, dict) else None
    return float(value) if value is not None and math.isfinite(value) else None


def time_curves(runs: list[Run]) -> list[Curve]:
    """Quality against training time from the runs' ``budgets.json``, grouped by data set and
    model (and any swept override other than the seed), averaged over seeds.

    A curve holds the budgets every seed reached; when a seed stopped before a later budget, the
    curve ends with the final models at the runs' mean training time instead of repeating the
    final model at budgets it never reached.
    """
    curves = []
    for (data, model), members in _time_groups(runs).items():
        budgets, end, end_x = _common_budgets(members)
        for metric, field_name, _ in TIME_METRICS:
            columns = _budget_columns(members, budgets, end, metric, field_name)
            if not columns or any(v is None for column in columns for v in column):
                continue
            means, halves, lows, highs = _seed_summary(cast(list[list[float]], columns))
            steps = _mean_steps(members, budgets, end)
            curves.append(
                Curve(
                    data,
                    model,
                    metric,
                    (*budgets, end_x) if end else tuple(budgets),
                    tuple(means),
                    tuple(halves),
                    len(members),
                    tuple(steps),
                    tuple(lows),
                    tuple(highs),
                    end,
                )
            )
    return curves


def _time_groups(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """The runs with ``budgets.json`` by ``(data, label)``, in the runs' order. A swept data
    option (e.g. ``data.base`` of digits) makes a data set of its own (``name key=value``), as
    in :func:`_data_sets`; the label is the model and every other swept override but the seed
    (``model key=value ...``)."""
    swept = [k for k in varying(runs) if k != "seed"]
    data_keys = [k for k in swept if k.startswith("data.")]
    model_keys = [k for k in swept if k not in data_keys]
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if run.budgets:
            groups.setdefault(
                (_named(run.data, run.overrides, data_keys), _named(run.model, run.overrides, model_keys)), []
            ).append(run)
    return groups


def _common_budgets(members: list[Run]) -> tuple[list[float], bool, float]:
    """``(budgets, end, end_x)`` of a curve: the budgets (ascending) that every member reached;
    ``end`` when some member stopped before a later budget, every member has its training seconds
    and their mean ``end_x`` comes after the last common budget (``end_x`` is 0 without ``end``)."""
    every = sorted({b["budget_s"] for r in members for b in r.budgets})
    budgets = [b for b in every if all(_reached(r, b) is not None for r in members)]
    seconds = [r.metrics.get("train_seconds") for r in members]
    end = len(budgets) < len(every) and all(isinstance(t, (int, float)) for t in seconds)
    end_x = statistics.fmean(cast(list[float], seconds)) if end else 0.0
    end = end and (not budgets or end_x > budgets[-1])
    return budgets, end, end_x


def _budget_columns(
    members: list[Run], budgets: list[float], end: bool, metric: str, field_name: str
) -> list[list[float | None]]:
    """Per budget (and, with ``end``, the end of training: ``metrics.json``), the members' fiber
    value of ``metric`` (its ``field_name``: ``ratio`` or ``value``); ``None`` where one is missing
    or not finite."""
    columns = [[_value(cast(dict[str, Any], _reached(r, b))["fiber"], metric, field_name) for r in members] for b in budgets]
    if end:
        columns.append([_value(r.metrics.get("fiber"), metric, field_name) for r in members])
    return columns


def _seed_summary(columns: list[list[float]]) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per column of seeds' values: the mean, the half-width ``t_{0.975, n−1} · s / √n`` of the 95%
    t-interval (NaN for one seed), the lowest and the highest value."""
    from scipy import stats

    means, halves, lows, highs = [], [], [], []
    for column in columns:
        values = [float(v) for v in column]
        means.append(statistics.fmean(values))
        lows.append(min(values))
        highs.append(max(values))
        n = len(values)
        halves.append(float(stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n)) if n > 1 else float("nan"))
    return means, halves, lows, highs


def _mean_steps(members: list[Run], budgets: list[float], end: bool) -> list[float]:
    """The members' mean training step at each budget (and, with ``end``, at the end of training)."""
    steps = [statistics.fmean([float(cast(dict[str, Any], _reached(r, b))["step"]) for r in members]) for b in budgets]
    if end:
        steps.append(statistics.fmean([float(r.metrics.get("steps") or 0) for r in members]))
    return steps


def time_table(curves: list[Curve]) -> str:
    """Markdown: one row per data set, model and budget; mean ± 95% half-width over seeds."""
    by_key: dict[tuple[str, str], dict[str, Curve]] = {}
    for curve in curves:
        by_key.setdefault((curve.data, curve.model), {})[curve.metric] = curve
    metrics = [m for m in TIME_METRICS if any(m[0] in v for v in by_key.values())]
    header = ["data", "model", "budget s", "steps", *[m[2] for m in metrics], "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for data, model in sorted(by_key, key=lambda k: (_order(k[0], DATA_ORDER), _order(k[1].split(" ")[0], MODEL_ORDER), k[1])):
        row = by_key[(data, model)]
        first = next(iter(row.values()))
        for i, budget in enumerate(first.budgets):
            cells = []
            for m in metrics:
                c = row.get(m[0])
                if c is None:
                    cells.append("")
                else:
                    cells.append(significant(c.mean[i]) + plus_minus(c.half_width[i]))
            when = f"end of training ({budget:.0f})" if first.end and i == len(first.budgets) - 1 else f"{budget:g}"
            lines.append("| " + " | ".join([data, model, when, f"{first.steps[i]:.0f}", *cells, str(first.seeds)]) + " |")
    return "\n".join(lines)


def plot_time_curves(path: Path, curves: list[Curve]) -> None:
    """``quality_vs_time.png``: one column per data set, one row per metric, a line per model
    (the mean over seeds) with bars spanning the lowest and highest seed."""
    from bundlenet.evaluation.plotting import plt, save_figure

    datas = sorted({c.data for c in curves}, key=lambda d: _order(d, DATA_ORDER))
    metrics = [m for m in TIME_METRICS if any(c.metric == m[0] for c in curves)]
    models = sorted({c.model for c in curves}, key=lambda m: (_order(m.split(" ")[0], MODEL_ORDER), m))
    colour = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}  # one colour per model in every panel
    fig, axes = plt.subplots(len(metrics), len(datas), figsize=(3.2 * len(datas), 2.6 * len(metrics) + 0.6), squeeze=False)
    for j, data in enumerate(datas):
        for i, (metric, _, label) in enumerate(metrics):
            ax = axes[i][j]
            drawn = sorted(
                (c for c in curves if c.data == data and c.metric == metric), key=lambda c: _order(c.model, MODEL_ORDER)
            )
            if not drawn:
                ax.axis("off")
                continue
            _draw_panel(ax, drawn, colour)
            if i == 0:
                ax.set_title(data)
            if not any(c.data == d and c.metric == metric for d in datas[:j] for c in curves):  # the row's first panel
                ax.set_ylabel(label, fontsize=8)
            if i == len(metrics) - 1 or not any(c.data == data and c.metric == metrics[i + 1][0] for c in curves):
                ax.set_xlabel("training seconds (1 thread)")
    _finish_figure(fig, models, colour, any(c.end for c in curves), len(metrics))
    save_figure(fig, path)


def _draw_panel(ax: Axes, drawn: list[Curve], colour: dict[str, Any]) -> None:
    """One panel: each curve's means against its budgets (log x), bars from the lowest to the
    highest seed, a hollow square at an end of training; ticks at the budgets only."""
    for c in drawn:
        below = [m - lo for m, lo in zip(c.mean, c.low)] if c.low else None
        above = [hi - m for m, hi in zip(c.mean, c.high)] if c.high else None
        ax.errorbar(
            c.budgets,
            c.mean,
            yerr=None if below is None else [below, cast(list[float], above)],
            marker="o",
            capsize=3,
            label=c.model,
            color=colour[c.model],
        )
        if c.end:  # the end of training, before the next budget: a square, no tick
            ax.plot(
                c.budgets[-1:],
                c.mean[-1:],
                marker="s",
                markersize=8,
                fillstyle="none",
                linestyle="",
                color=colour[c.model],
            )
    ticks = sorted({b for c in drawn for b in (c.budgets[:-1] if c.end else c.budgets)})
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{b:g}" for b in ticks])
    ax.minorticks_off()


def _finish_figure(fig: Figure, models: list[str], colour: dict[str, Any], ends: bool, num_metrics: int) -> None:
    """The figure's legend (a model per entry, 4 to a row, at the bottom), its title (naming the
    squares when some curve ``ends`` before a budget) and a layout that leaves the legend room."""
    from bundlenet.evaluation.plotting import plt

    handles = [plt.Line2D([], [], color=colour[m], marker="o", label=m) for m in models]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(models), 4), fontsize=8, frameon=False)
    title = "Fiber quality against training time: mean over seeds; bars: lowest to highest seed" + (
        "; squares: the end of training (the runs stopped before the next budget)" if ends else ""
    )
    fig.suptitle(textwrap.fill(title, width=int(13 * fig.get_figwidth())), fontsize=9)  # ~13 characters an inch
    rows = math.ceil(len(models) / 4)
    fig.tight_layout(rect=(0, 0.25 * rows / (2.6 * num_metrics + 0.6) + 0.02, 1, 1))


def build_report(root: Path) -> str:
    """The Markdown report of the multirun at ``root`` (and ``quality_vs_time.png`` when its runs
    were evaluated at training-time budgets)."""
    runs = find_runs(root)
    protocol = runs[0].evaluation.get("protocol", {})
    sizes = (
        f"{protocol.get('iterations')} iterations; fibers: {protocol.get('num_fibers')} × {protocol.get('num_points')} "
        f"points; global: {protocol.get('num_global')} points (W1/W2 on the first {protocol.get('global_ot_points') or 'all'})"
    )
    parts = [
        f"Fiber-wise metrics (mean [95% bootstrap CI] over {sizes}; lower is better, best model in bold; "
        "precision: mean distance from a sample to the true fiber; coverage: mean distance from the true fiber to the "
        "nearest sample, over its value for an exact sample):",
        "",
        scope_table(runs, "fiber", root),
        "",
        "Global metrics:",
        "",
        scope_table(runs, "global", root),
        "",
    ]
    curves = time_curves(runs)
    if curves:
        plot_time_curves(root / "quality_vs_time.png", curves)
        parts += [
            "Quality against training time (mean ± 95% t-interval over seeds; figure: quality_vs_time.png):",
            "",
            time_table(curves),
            "",
        ]
    return "\n".join(parts)
