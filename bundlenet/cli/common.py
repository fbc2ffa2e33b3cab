"""Shared behaviour of the command-line entry points: bad input costs one line, not a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from bundlenet.errors import BundleNetError

T = TypeVar("T")
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


def user_error(err: BaseException | None) -> BundleNetError | None:
    """The :class:`BundleNetError` behind ``err`` (Hydra's instantiate wraps them), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, BundleNetError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


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
