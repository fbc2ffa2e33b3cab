"""``python -m bundlenet.report MULTIRUN_DIR``: the Markdown tables of a sweep's runs
(:mod:`bundlenet.evaluation.report`), printed and written to ``MULTIRUN_DIR/report.md``
(an existing report is replaced only with ``--overwrite``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bundlenet.cli.common import run_cli
from bundlenet.errors import InputError
from bundlenet.evaluation.report import build_report
from bundlenet.io import write_text


def report(argv: list[str] | None = None) -> str:
    """Parse ``argv``, build the tables of the multirun, print them and write ``report.md``."""
    parser = argparse.ArgumentParser(prog="python -m bundlenet.report", description="Markdown tables of a train.py multirun")
    parser.add_argument("multirun_dir", type=Path, help="hydra.sweep.dir of a train.py -m run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report.md and quality_vs_time.png")
    args = parser.parse_args(argv)
    existing = [p for p in (args.multirun_dir / "report.md", args.multirun_dir / "quality_vs_time.png") if p.exists()]
    if existing and not args.overwrite:
        raise InputError(f"{existing[0]} exists; pass --overwrite to replace the report, or copy it away first")
    report = build_report(args.multirun_dir)
    write_text(args.multirun_dir / "report.md", report)
    sys.stdout.write(report + "\n")
    return report


def main(argv: list[str] | None = None) -> str:
    """``python -m bundlenet.report`` / ``bundlenet-report``: bad input costs one ``error:`` line."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(report, argv)


if __name__ == "__main__":
    main()
