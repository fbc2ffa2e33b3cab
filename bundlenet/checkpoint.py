"""Checkpoints: loading any bundlenet model from a checkpoint alone, with one-line errors, and
writing them without holding a second copy in memory.

Checkpoints are read with ``torch.load(weights_only=True)``: only tensors and plain Python
values are unpickled, never arbitrary objects.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from bundlenet.errors import CheckpointError
from bundlenet.io import write_with
from bundlenet.models.base import BundleModel

_FIX = "pass ckpt_path=<run dir> (its reported model) or a checkpoint under <run dir>/checkpoints/ written by train.py"


class StreamingCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, streaming local files to disk.

    Lightning's ``TorchCheckpointIO`` serialises the whole checkpoint into memory, then copies
    it (``BytesIO.getvalue()``), before writing: two extra copies of the weights and optimizer
    state at every save (+0.35 GB for the authors' model). This writes ``torch.save`` straight
    into a temporary file beside the target and renames it (:func:`bundlenet.io.write_with`):
    as with Lightning's writer, a save interrupted half-way leaves the previous checkpoint
    intact. Remote (``scheme://``) paths go to Lightning's writer, and ``storage_options`` are
    refused as Lightning refuses them.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # type: ignore[arg-type]  # typed str | Path, takes any path
            return
        try:
            write_with(path, lambda tmp: torch.save(checkpoint, tmp))
        except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
            reason = getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0][:80]
            raise CheckpointError(
                f"could not write checkpoint {path} ({reason}); the previous one is kept: "
                f"free space or fix permissions, then resume with ckpt_path=last"
            ) from None


def run_checkpoint(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or, for the directory of a finished ``train.py`` run, the checkpoint of
    the model that run reported (the ``checkpoint`` its ``metrics.json`` names: ``best.ckpt``
    or ``last.ckpt``, as ``final_model`` chose), looked up in the directory's own
    ``checkpoints/`` first so that a moved or copied run still finds it."""
    p = Path(path)
    if not p.is_dir():
        return p
    metrics = p / "metrics.json"
    example = p / "checkpoints" / "last.ckpt"
    if not metrics.is_file():
        raise CheckpointError(
            f"ckpt_path={p} is a directory without metrics.json (not a finished train.py run); "
            f"give a checkpoint file, e.g. {example}"
        )
    try:
        named = json.loads(metrics.read_text()).get("checkpoint")
    except (ValueError, OSError, AttributeError):
        named = None
    if not isinstance(named, str) or not named or named == "None":
        raise CheckpointError(f"{metrics} names no checkpoint; give a checkpoint file, e.g. {example}")
    inside = p / "checkpoints" / Path(named).name
    return inside if inside.is_file() else Path(named)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dictionary at ``path`` (safe load; a run directory reads the checkpoint of
    its reported model, :func:`run_checkpoint`), or a one-line :class:`CheckpointError`."""
    p = run_checkpoint(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}; {_FIX}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types (and long messages) for truncated or foreign files
        raise CheckpointError(
            f"cannot read checkpoint {p}: incomplete or not a checkpoint; give a complete .ckpt written by train.py"
        ) from None
    if not isinstance(ckpt, dict) or "bundlenet" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{p} is not a bundlenet checkpoint; {_FIX}")
    return ckpt


def checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The global step a checkpoint was saved at, read without loading its tensors (mmap)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def check_version(written_by: str, path: str | os.PathLike[str]) -> None:
    """Refuse checkpoints of another release series (major, and minor while major is 0)."""
    from bundlenet import __version__

    def series(version: str) -> tuple[str, ...]:
        parts = version.split(".")
        return tuple(parts[:2]) if parts[0] == "0" else tuple(parts[:1])

    if series(written_by) != series(__version__):
        raise CheckpointError(
            f"checkpoint {path} was written by bundlenet {written_by}, incompatible with this bundlenet "
            f"{__version__}; install bundlenet=={written_by} to use it, or retrain"
        )


def model_class(name: str) -> type[BundleModel]:
    """Resolve a model class recorded in a checkpoint (only classes of this package)."""
    module, _, qualname = name.rpartition(".")
    if not module.startswith("bundlenet."):
        raise CheckpointError(f"checkpoint names a model outside bundlenet ({name}); {_FIX}")
    try:
        cls = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError):
        raise CheckpointError(f"checkpoint model {name} does not exist in this bundlenet version") from None
    if not (isinstance(cls, type) and issubclass(cls, BundleModel)):
        raise CheckpointError(f"checkpoint model {name} is not a bundlenet model")
    return cls


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> BundleModel:
    """Build the model recorded in the checkpoint and load its weights; eval mode."""
    ckpt = read_checkpoint(path)
    check_version(str(ckpt["bundlenet"].get("version", "unknown")), path)
    cls = model_class(str(ckpt["bundlenet"].get("model", "")))
    hparams = ckpt.get("hyper_parameters", {})
    if not isinstance(hparams, dict):
        raise CheckpointError(
            f"checkpoint {path} has no model options (hyper_parameters is {type(hparams).__name__}); "
            f"it was edited or not written by train.py: {_FIX}"
        )
    try:
        model = cls(**hparams)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} does not match this bundlenet version "
            f"(written by {ckpt['bundlenet'].get('version', '?')}): {first}"
        ) from None
    broken = next(
        (name for name, value in model.state_dict().items() if value.is_floating_point() and bool(torch.isnan(value).any())), None
    )
    broken = broken or next((name for name, value in model.named_parameters() if not bool(torch.isfinite(value).all())), None)
    if broken is not None:
        raise CheckpointError(
            f"checkpoint {path} holds NaN or infinite weights ({broken}): its training diverged; "
            f"use another checkpoint of the run (best.ckpt) or retrain with a lower model.optimizer.lr"
        )
    data = ckpt["bundlenet"].get("data")
    model.data_config = data if isinstance(data, dict) else None
    return model.to(map_location).eval()
