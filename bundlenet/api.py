"""Training from Python: :func:`fit` is ``python train.py data=csv`` for a table in memory.

:func:`fit` composes ``conf/train.yaml`` with ``data=csv`` through Hydra's compose API (the
configs the command line reads, found from any directory: :data:`bundlenet.configs.CONF_DIR`),
applies the keyword overrides, and runs the training job of ``train.py``
(:func:`bundlenet.training.run_training`): the same topology and support detection, cover,
trainer, checkpoints and final evaluation, written into a run directory. A DataFrame or a
structured NumPy array is first written to ``<run_dir>/data.csv`` and read back by the CSV
loader exactly as ``data.path`` would be, so the model is the one ``train.py`` trains on that
file with the same options and seed.

Keyword overrides (``fit(..., key=value)``):

* ``group__key=value`` is the config key ``group.key`` (``model__fiber_context="chart"``,
  ``trainer__max_steps=500``, ``model__optimizer__lr=1e-3``): ``__`` stands for a dot.
* A config group given a string chooses its config: ``model="cflow"``, ``logger="none"``,
  ``trainer="gpu"``, ``experiment=...``.
* A top-level key of ``train.yaml`` (``seed``, ``ckpt_path``, ``optimized_metric``) is itself.
* Any other plain key is looked up in the groups ``trainer``, ``model``, ``data``,
  ``evaluation``: ``max_steps=500`` is ``trainer.max_steps``, ``num_train=200`` is
  ``data.num_train``. A key found in more than one of them (``fiber_span``, ``ode_steps``) must be
  spelled with its group.
* ``overrides=["trainer.max_steps=500", "+callbacks.budget=..."]``: Hydra override strings,
  exactly as on the command line (applied before the keywords).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict

from bundlenet.configs import CONF_DIR, compose
from bundlenet.errors import InputError, user_error
from bundlenet.io import run_lock

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from bundlenet.models.base import BundleModel

log = logging.getLogger(__name__)

DATA_FILE = "data.csv"  # a table given in memory, as written into the run directory
_SHORTHAND_GROUPS = ("trainer", "model", "data", "evaluation")


def fit(
    data: pd.DataFrame | np.ndarray | str | Path,
    base: str | Sequence[str],
    model: str = "bundlenet",
    *,
    total: str | Sequence[str] | None = None,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    evaluate: bool = True,
    verbose: bool = True,
    **keywords: Any,
) -> BundleModel:
    """Train ``model`` on a table: ``python train.py data=csv data.path=... data.base_columns=base``.

    Args:
        data: a pandas DataFrame, a structured NumPy array (its field names are the columns), or
            the path of a delimited text table (as ``data.path``).
        base: the output column(s) y (``data.base_columns``).
        model: a config of ``conf/model`` (``bundlenet``, ``cflow``, ``cfm``, ...).
        total: the input columns x (``data.total_columns``); ``None``: every other numeric column.
        run_dir: where the run's files go (checkpoints, ``metrics.json``, figures, the composed
            ``config.yaml``); ``None``: a new temporary directory (logged, and kept).
        overrides: Hydra override strings, as on the command line.
        evaluate: run the final evaluation of ``train.py`` (``metrics.json``, ``fibers.png``).
        verbose: show progress (log lines) when logging is not configured, as in a notebook.
        **keywords: config overrides (module docstring).

    Returns:
        The trained model (the one the run reports, ``final_model``), in eval mode, with ``model.run_dir`` and
        ``model.metrics`` (those of ``metrics.json``; only steps and time without ``evaluate``).

    Raises:
        InputError: bad data, columns or options, with the one-line messages of ``train.py``.
    """
    out = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="bundlenet-fit-"))
    cfg = compose_fit_config(model, overrides, keywords)
    with _progress(verbose), run_lock(out):
        _assign_table(cfg, out, _table_path(data, out), base, total)
        trained, metrics = _train(cfg, evaluate)
    trained.run_dir = out
    trained.metrics = metrics
    return trained.eval()


def _assign_table(cfg: DictConfig, out: Path, path: Path, base: str | Sequence[str], total: str | Sequence[str] | None) -> None:
    """Point the config at the run directory and at the table's file and columns."""
    _assign(cfg, "paths.output_dir", str(out.resolve()))
    _assign(cfg, "data.path", str(path))
    _assign(cfg, "data.base_columns", [base] if isinstance(base, str) else [str(c) for c in base])
    if total is not None:
        _assign(cfg, "data.total_columns", [total] if isinstance(total, str) else [str(c) for c in total])


def _train(cfg: DictConfig, evaluate: bool) -> tuple[BundleModel, dict[str, Any]]:
    """:func:`bundlenet.training.run_training`, raising a user's error itself (not Hydra's wrapper)."""
    from bundlenet.training import run_training

    try:
        return run_training(cfg, evaluate=evaluate)
    except Exception as err:  # Hydra's instantiate wraps the one-line errors: raise the error itself
        cause = user_error(err)
        if cause is None or cause is err:
            raise
        raise cause from None


def compose_fit_config(model: str, overrides: Sequence[str], keywords: Mapping[str, Any]) -> DictConfig:
    """``train.yaml`` with ``data=csv model=<model>``, the override strings and the keywords
    (module docstring); ``data.path`` and ``data.base_columns`` are still to be set."""
    if not isinstance(model, str):
        raise InputError(f"model= names a config of conf/model (bundlenet, cflow, cfm, ...), got {model!r}")
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    choices = [f"{k}={v}" for k, v in keywords.items() if k in groups and isinstance(v, str)]
    values = {k: v for k, v in keywords.items() if not (k in groups and isinstance(v, str))}
    cfg = compose("train", ["data=csv", f"model={model}", *choices, *overrides, "paths.output_dir=."])
    for key, value in values.items():
        _assign(cfg, resolve_key(cfg, key), value)
    return cfg


def resolve_key(cfg: DictConfig, keyword: str) -> str:
    """The dotted config key a :func:`fit` keyword stands for (module docstring)."""
    if "__" in keyword:
        key = keyword.replace("__", ".")
        if not _has(cfg, key):
            raise InputError(
                f"{keyword}= is not a config key ({key} is not in the composed config); "
                f"see `python train.py data=csv --cfg job` for the keys"
            )
        return key
    if keyword in cfg and not isinstance(cfg[keyword], DictConfig):
        return keyword
    found = [f"{group}.{keyword}" for group in _SHORTHAND_GROUPS if _has(cfg, f"{group}.{keyword}")]
    if not found:
        raise InputError(
            f"{keyword}= is not a key of {', '.join(_SHORTHAND_GROUPS)} or train.yaml; spell it as "
            f"group__key=... (e.g. model__{keyword}=...)"
        )
    if len(found) > 1:
        spelled = " or ".join(f"{k.replace('.', '__')}=" for k in found)
        raise InputError(f"{keyword}= is a key of more than one config group; write {spelled}")
    return found[0]


def _has(cfg: DictConfig, key: str) -> bool:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node._get_node(part)
    return True


def _assign(cfg: DictConfig, key: str, value: Any) -> None:
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)


def _table_path(data: Any, run_dir: Path) -> Path:
    """The path the CSV loader reads: ``data`` itself, or the table written to ``run_dir``."""
    import numpy as np
    import pandas as pd

    if isinstance(data, (str, Path)):
        path = Path(data).expanduser()
        if not path.is_file():
            raise InputError(
                f"data={str(data)!r} is not a file; give a table path, a pandas DataFrame or a structured NumPy array"
            )
        return path.resolve()
    if isinstance(data, np.ndarray):
        if data.dtype.names is None:
            raise InputError(
                "a NumPy array needs field names for its columns (a structured array, e.g. from "
                "np.genfromtxt(..., names=True)); or pass a pandas DataFrame"
            )
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, a structured NumPy array or a path, got {type(data).__name__}")
    names = [str(c) for c in data.columns]
    if len(set(names)) != len(names):
        raise InputError(f"the table's column names repeat ({names}); give each column its own name")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = (run_dir / DATA_FILE).resolve()
    data.set_axis(names, axis=1).to_csv(path, index=False)
    return path


@contextmanager
def _progress(verbose: bool) -> Iterator[None]:
    """Show the job's log lines on stdout while it runs when nothing else shows them (a
    notebook, a plain script without logging configured)."""
    logger = logging.getLogger("bundlenet")
    if not verbose or logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
