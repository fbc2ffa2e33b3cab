"""Public data files: use the local copy, or download it once, atomically, with a progress bar.

A file is looked up in a folder (``data.root``); when it is missing and downloading is allowed,
it is fetched from its URL into a temporary file beside the target, checked by the caller's
validator, and only then renamed into place (:mod:`bundlenet.io`), so an interrupted or bad
download never leaves a file under the final name. Every failure is one line that names the
file, where to get it, and the folder to put it in.
"""

from __future__ import annotations

import logging
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from bundlenet.errors import InputError
from bundlenet.io import atomic_path

log = logging.getLogger(__name__)

Opener = Callable[..., IO[bytes]]
_CHUNK = 1 << 16


def fetch(
    url: str,
    dest: str | Path,
    validate: Callable[[Path], None] | None = None,
    timeout: float = 30.0,
    opener: Opener | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` atomically; ``validate(tmp)`` may reject the download.

    Args:
        url: where to get the file.
        dest: the final path; its folder is created.
        validate: called on the complete temporary file before it is renamed to ``dest``;
            raise :class:`InputError` to reject it (``dest`` is then left untouched).
        timeout: seconds to wait for the server.
        opener: ``urllib.request.urlopen``-like callable (tests pass a fake).
        progress: show a rich progress bar.

    Raises:
        InputError: the download failed (one line: file, URL, folder) or ``validate`` rejected it.
    """
    target = Path(dest)
    open_url = opener or urllib.request.urlopen
    try:
        with atomic_path(target) as tmp:
            with open_url(url, timeout=timeout) as response, tmp.open("wb") as out:
                size = _content_length(response)
                if progress:
                    _copy_with_progress(response, out, size, target.name)
                else:
                    shutil.copyfileobj(response, out, _CHUNK)
            if validate is not None:
                validate(tmp)
    except (urllib.error.URLError, OSError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(
            f"cannot download {target.name} from {url} ({_reason(err)}); download it yourself and put it in {target.parent}"
        ) from None
    log.info("downloaded %s to %s", url, target)
    return target


def ensure_file(
    folder: str | Path,
    name: str,
    url: str,
    download: bool = True,
    validate: Callable[[Path], None] | None = None,
    opener: Opener | None = None,
) -> Path:
    """The path of ``folder/name``, downloading it from ``url`` first when it is missing.

    Raises:
        InputError: missing and ``download`` is off, or the download failed; the message names
            the file, the URL and the folder.
    """
    path = Path(folder) / name
    if path.is_file():
        return path
    if not download:
        raise InputError(
            f"{name} not found in {path.parent}; download it from {url} and put it in {path.parent} "
            f"(or set data.root to a folder that has it)"
        )
    log.info("%s not found in %s; downloading %s", name, path.parent, url)
    return fetch(url, path, validate=validate, opener=opener)


def _reason(err: BaseException) -> str:
    """One line saying why a download failed."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    reason = getattr(err, "reason", None) or err
    text = str(reason).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _content_length(response: IO[bytes]) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value and str(value).isdigit() else None


def _copy_with_progress(source: IO[bytes], out: IO[bytes], size: int | None, label: str) -> None:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(label, total=size)
        while chunk := source.read(_CHUNK):
            out.write(chunk)
            bar.update(task, advance=len(chunk))
