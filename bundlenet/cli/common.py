"""Shared behaviour of the command-line entry points: bad input costs one line, not a traceback."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from omegaconf.errors import MissingMandatoryValue

from bundlenet.configs import CONF_DIR, check_choices
from bundlenet.errors import InputError, cause_of, user_error
from bundlenet.io import write_with
from bundlenet.loggers import quiet_lightning

T = TypeVar("T")
__all__ = ["CONF_DIR", "check_group_choices", "quiet_lightning", "run_cli"]

log = logging.getLogger("bundlenet")


def run_cli(fn: Callable[..., T], *args: object) -> T:
    """Call ``fn(*args)``; on a :class:`BundleNetError`, or a required option left unset (``???``
    in a config: OmegaConf's ``MissingMandatoryValue``), print ``error: <message>`` and exit 2."""
    try:
        return fn(*args)
    except Exception as err:
        cause = user_error(err)
        missing = _missing_option(err)
        if cause is not None:
            message = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        elif missing is not None:
            message = f"{missing} is required: pass {missing}=..."
        else:
            raise
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)


def _missing_option(err: BaseException | None) -> str | None:
    """The dotted key of the unset mandatory option behind ``err`` (Hydra's instantiate wraps it), if any."""
    missing = cause_of(err, MissingMandatoryValue)
    if missing is None:
        return None
    key = str(missing.full_key or getattr(missing, "key", "") or "")
    match = re.search(r"Missing mandatory value: ([\w.\[\]]+)", str(missing))
    return key or (match.group(1) if match else "an option")


def check_seed(value: object, option: str = "seed") -> int | None:
    """``value`` if it is an integer or ``None``; else a one-line :class:`InputError` naming ``option``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InputError(f"{option} must be an integer (or null), got {value!r}")
    return value


def check_device(device: str) -> str:
    """``device`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) if torch knows it and this machine has it;
    else a one-line :class:`InputError` naming the choices."""
    import torch

    try:
        parsed = torch.device(str(device))
    except (RuntimeError, ValueError, TypeError):
        raise InputError(
            f"device={device} is not a torch device; use device=cpu, or cuda / cuda:N on a machine with a GPU"
        ) from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device} but this machine or torch build has no CUDA GPU; use device=cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise InputError(
            f"device={device} but there are {torch.cuda.device_count()} CUDA device(s); use cuda:0 ... or device=cpu"
        )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device={device} but MPS is not available here; use device=cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device={device} is not supported; use device=cpu, or cuda / cuda:N on a machine with a GPU")
    return str(device)


def check_group_choices(conf_dir: Path, argv: Sequence[str]) -> None:
    """Refuse ``group=name`` overrides naming a config that does not exist
    (:func:`bundlenet.configs.check_choices`) with a single ``error:`` line and exit code 2;
    Hydra's own message spans several lines."""
    try:
        check_choices(conf_dir, argv)
    except InputError as err:
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output that exists (unless ``overwrite``), is a folder, or
    lies in a folder that cannot be written."""
    if output.is_dir():
        raise InputError(f"output {output} is a folder; give a file name, e.g. output={output / 'out'}{output.suffix or '.csv'}")
    if output.exists() and not overwrite:
        raise InputError(f"output {output} exists; choose another output= or pass overwrite=true")
    folder = output.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise InputError(f"cannot write output {output}: {folder} is not a writable folder; choose another output=")


def write_output(output: Path, writer: Callable[[Path], None]) -> None:
    """``writer(tmp)`` then rename onto ``output`` (:func:`bundlenet.io.write_with`); a failed write
    (read-only or full file system) is a one-line :class:`InputError`."""
    try:
        write_with(output, writer)
    except OSError as err:
        raise InputError(
            f"cannot write output {output} ({err.strerror or type(err).__name__}); free space or choose another output="
        ) from None
