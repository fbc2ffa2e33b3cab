"""Where a run's files come from: the package version, the git commit of the source tree and the
UTC date, written by ``train.py`` (and :func:`bundlenet.fit`) as ``RUN/provenance.json`` and read
back by the docs' regeneration (:mod:`bundlenet.evaluation.docs`).

``commit`` is ``git rev-parse HEAD`` of the checkout that holds the imported package, and
``dirty`` says whether its tracked files differ from that commit (``git status --porcelain
--untracked-files=no``). Both are ``None`` when the package is not in a git checkout (an installed
wheel) or git is missing: provenance never stops a run.
"""

from __future__ import annotations

import datetime
import logging
import subprocess
from pathlib import Path
from typing import Any

from bundlenet.io import write_json

log = logging.getLogger("bundlenet.provenance")

PROVENANCE_FILE = "provenance.json"


def _git(args: list[str], cwd: Path) -> str | None:
    """The stripped output of ``git ARGS`` in ``cwd``, or ``None`` when git is missing or fails."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def provenance(source: Path | None = None) -> dict[str, Any]:
    """``{"package", "version", "commit", "dirty", "date"}`` of the source tree at ``source``
    (default: the imported bundlenet package's folder); ``date`` is ISO 8601 UTC, to the second."""
    from bundlenet import __version__

    folder = source if source is not None else Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], folder) if folder.is_dir() else None
    status = _git(["status", "--porcelain", "--untracked-files=no"], folder) if commit else None
    return {
        "package": "bundlenet",
        "version": __version__,
        "commit": commit or None,
        "dirty": None if status is None else bool(status),
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }


def write_provenance(out: Path) -> dict[str, Any]:
    """Write :func:`provenance` to ``out/provenance.json`` and return it."""
    record = provenance()
    write_json(out / PROVENANCE_FILE, record)
    log.debug("provenance: %s", record)
    return record
