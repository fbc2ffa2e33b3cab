"""``python -m bundlenet.report MULTIRUN_DIR``: the Markdown tables of a sweep's runs
(:mod:`bundlenet.evaluation.report`), printed and written to ``MULTIRUN_DIR/report.md``
(an existing report is replaced only with ``--overwrite``).

``python -m bundlenet.report --docs --runs DIR [--run-missing]``: the docs' tables and figures
(:mod:`bundlenet.evaluation.docs`), from the sweeps that ``docs/results/manifest.yaml`` lists under
DIR; ``--run-missing`` first runs the sweeps whose directories are missing.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from bundlenet.cli.common import run_cli
from bundlenet.errors import InputError
from bundlenet.evaluation.docs import load_manifest, write_outputs
from bundlenet.evaluation.report import build_report
from bundlenet.io import write_text

MANIFEST = Path("docs") / "results" / "manifest.yaml"


def _sweep_dirs(items: list[str]) -> dict[str, Path]:
    found = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--sweep-dir {item}: give NAME=PATH, NAME a sweep of the manifest")
        found[name] = Path(path)
    return found


def report(argv: list[str] | None = None) -> str:
    """Parse ``argv``; build the tables of the multirun (print them, write ``report.md``), or with
    ``--docs`` the docs' snippets and figures (print the files written)."""
    parser = argparse.ArgumentParser(prog="python -m bundlenet.report", description="Markdown tables of a train.py multirun")
    parser.add_argument("multirun_dir", type=Path, nargs="?", help="hydra.sweep.dir of a train.py -m run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report.md and quality_vs_time.png")
    docs = parser.add_argument_group("the docs' tables and figures")
    docs.add_argument("--docs", action="store_true", help="write the snippets and figures that the manifest lists")
    docs.add_argument("--runs", type=Path, help="the folder of the manifest's sweeps (one directory per sweep)")
    docs.add_argument("--manifest", type=Path, default=MANIFEST, help=f"default: {MANIFEST} (run from the repository root)")
    docs.add_argument("--run-missing", action="store_true", help="run the commands of the sweeps whose directories are missing")
    docs.add_argument("--sweep-dir", action="append", default=[], metavar="NAME=PATH", help="one sweep's directory elsewhere")
    docs.add_argument("--only", nargs="+", metavar="PATH", help="only these snippets/figures (their manifest paths)")
    args = parser.parse_args(argv)
    if args.docs:
        if args.runs is None or args.multirun_dir is not None:
            raise InputError("--docs takes --runs DIR (the folder of the manifest's sweeps) and no MULTIRUN_DIR")
        manifest = load_manifest(args.manifest)
        command = "python -m bundlenet.report --docs --runs " + shlex.quote(manifest.runs_label)
        if args.run_missing:
            command += " --run-missing"
        written = write_outputs(
            manifest,
            args.runs,
            args.manifest.resolve().parent.parent,
            command,
            run_missing=args.run_missing,
            overrides=_sweep_dirs(args.sweep_dir),
            only=args.only,
        )
        listing = "\n".join(str(p) for p in written)
        sys.stdout.write(listing + "\n")
        return listing
    if args.multirun_dir is None:
        raise InputError("give MULTIRUN_DIR (a train.py -m sweep dir), or --docs --runs DIR")
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
