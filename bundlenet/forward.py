"""A user's forward map π (inputs → outputs, in the data's own units): named in a config as
``module:function`` (:func:`resolve_forward`) and called on tensors (:func:`torch_map`), so
refinement and the evaluation's re-simulation error use the true map of a table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from bundlenet.errors import InputError

ForwardMap = Callable[[Any], Any]


def torch_map(forward: ForwardMap) -> Callable[[Tensor], Tensor]:
    """A user's forward map (arrays ``[N, d_E]`` → ``[N, d_B]``, original units) as a map on
    tensors: called on tensors if it accepts them, else on NumPy arrays."""

    def on_tensors(x: Tensor) -> Tensor:
        try:
            out = forward(x)
        except Exception:  # a NumPy-only function: run it on arrays
            out = None
        if not isinstance(out, Tensor):
            out = torch.as_tensor(forward(x.detach().cpu().numpy()))
        out = out.to(x)
        return out.reshape(x.shape[0], -1) if out.dim() < 2 else out

    return on_tensors


def resolve_forward(path: str, option: str = "data.forward") -> ForwardMap:
    """A forward map named ``module:function`` (``option`` names the setting in errors)."""
    import importlib

    module, sep, name = str(path).partition(":")
    if not sep or not module or not name:
        raise InputError(f"{option}={path!r} must name a function as module:function (e.g. mypackage.sim:forward)")
    try:
        fn = getattr(importlib.import_module(module), name)
    except ImportError as err:
        raise InputError(f"{option}={path}: cannot import module {module!r} ({err}); put it on PYTHONPATH") from None
    except AttributeError:
        raise InputError(f"{option}={path}: module {module!r} has no function {name!r}") from None
    if not callable(fn):
        raise InputError(f"{option}={path}: {name!r} is not a function")
    return fn
