"""Errors raised for bad user input.

Every message is one line that names the fix (the option, the column, the expected shape).
The command-line entry points turn these exceptions into a single ``error:`` line and exit
code 2 instead of a traceback.
"""

from __future__ import annotations

import numbers
from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class BundleNetError(Exception):
    """Base class of the errors a user can fix by changing their input or options."""


class InputError(BundleNetError, ValueError):
    """A value, shape or option is invalid; the message names the expected and given value."""


class CheckpointError(BundleNetError):
    """A checkpoint is missing, unreadable, or was not written by bundlenet."""


class DivergenceError(BundleNetError, FloatingPointError):
    """Training diverged (a non-finite or exploding loss): the message names the step and the
    options to change."""


def positive_int(value: object, name: str) -> int:
    """``value`` as an ``int`` if it is a positive integer (Python or NumPy; ``True`` and ``2.5``
    are not), else a one-line :class:`InputError` naming the option ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def cause_of(err: BaseException | None, kind: type[E]) -> E | None:
    """The first exception of type ``kind`` in the chain of ``err`` (``err`` itself, then its
    ``__cause__`` or ``__context__``: Hydra's instantiate wraps the errors it meets), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def user_error(err: BaseException | None) -> BundleNetError | None:
    """The :class:`BundleNetError` behind ``err`` (Hydra's instantiate wraps them), if any."""
    return cause_of(err, BundleNetError)
