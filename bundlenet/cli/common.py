"""Shared behaviour of the command-line entry points: bad input costs one line, not a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from bundlenet.errors import user_error

T = TypeVar("T")

# the Hydra configs: shipped inside the package (bundlenet/conf in a wheel), or conf/ beside the
# package in a source checkout
_PACKAGED = Path(__file__).resolve().parents[1] / "conf"
CONF_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "conf"
log = logging.getLogger("bundlenet")


def run_cli(fn: Callable[..., T], *args: object) -> T:
    """Call ``fn(*args)``; on a :class:`BundleNetError` print ``error: <message>`` and exit 2."""
    try:
        return fn(*args)
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        message = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)


def check_group_choices(conf_dir: Path, argv: Sequence[str]) -> None:
    """Refuse ``group=name`` overrides (e.g. ``data=wine2``) naming a config that does not exist.

    Hydra's own message spans several lines; this one is a single ``error:`` line that lists
    the choices. Sweeps (``data=torus,moebius``) are checked value by value.
    """
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or "." in key or not (conf_dir / key).is_dir():
            continue
        choices = sorted(p.stem for p in (conf_dir / key).glob("*.yaml"))
        for name in value.split(","):
            name = name.strip()
            if name and name != "null" and name not in choices and not name.startswith(("choice(", "range(", "glob(")):
                sys.stderr.write(f"error: unknown {key} '{name}'; choose one of: {', '.join(choices)}\n")
                sys.exit(2)


_LIGHTNING_NOISE = ("💡 Tip", "GPU available: False", "TPU available: False", "HPU available: False",
                    "`weights_only` was not set")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_LIGHTNING_NOISE)


def quiet_lightning() -> None:
    """Drop Lightning's lines a user cannot act on (the litlogger tips; "GPU/TPU/HPU available:
    False" on a CPU machine; the default of ``weights_only`` when it reloads the best weights).
    Its warnings and real information stay."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "lightning_fabric.utilities.rank_zero", "pytorch_lightning.trainer.connectors.checkpoint_connector"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
