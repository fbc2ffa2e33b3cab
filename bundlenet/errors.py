"""Errors raised for bad user input.

Every message is one line that names the fix (the option, the column, the expected shape).
The command-line entry points turn these exceptions into a single ``error:`` line and exit
code 2 instead of a traceback.
"""

from __future__ import annotations


class BundleNetError(Exception):
    """Base class of the errors a user can fix by changing their input or options."""


class InputError(BundleNetError, ValueError):
    """A value, shape or option is invalid; the message names the expected and given value."""


class CheckpointError(BundleNetError):
    """A checkpoint is missing, unreadable, or was not written by bundlenet."""


def user_error(err: BaseException | None) -> BundleNetError | None:
    """The :class:`BundleNetError` behind ``err`` (Hydra's instantiate wraps them), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, BundleNetError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
