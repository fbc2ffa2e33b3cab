"""Messages of a data-parallel run from its first process only: the other ranks would repeat them."""

from __future__ import annotations

import logging
import os

from lightning_fabric.utilities.rank_zero import rank_zero_only


class FirstRankLog:
    """A module's logger (``logging.getLogger(name)``) whose :meth:`info` and :meth:`warning`
    speak on the first process (global rank 0, Lightning's ``rank_zero_only``) and nowhere else.
    With one process every message is logged."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    @rank_zero_only
    def info(self, msg: str, *args: object) -> None:
        self.logger.info(msg, *args, stacklevel=3)  # the record names the caller

    @rank_zero_only
    def warning(self, msg: str, *args: object) -> None:
        self.logger.warning(msg, *args, stacklevel=3)


def launcher_rank_zero() -> bool:
    """Whether this is a run's first process: not one that a ``ddp`` launcher started for
    another local rank or node (Lightning sets ``LOCAL_RANK`` and ``NODE_RANK`` in those)."""
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0
