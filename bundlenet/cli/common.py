"""Shared behaviour of the command-line entry points: bad input costs one line, not a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from bundlenet.configs import CONF_DIR, check_choices
from bundlenet.errors import InputError, user_error
from bundlenet.loggers import quiet_lightning

T = TypeVar("T")
__all__ = ["CONF_DIR", "check_group_choices", "quiet_lightning", "run_cli"]

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
    """Refuse ``group=name`` overrides naming a config that does not exist
    (:func:`bundlenet.configs.check_choices`) with a single ``error:`` line and exit code 2;
    Hydra's own message spans several lines."""
    try:
        check_choices(conf_dir, argv)
    except InputError as err:
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)
