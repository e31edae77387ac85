"""The subcommands that read results folders, given their parsed flags: ``report`` (tables, plots,
page), ``export`` (CSV, or another tool's format) and ``import`` (another tool's output folders
into a results store). ``report`` also reads lm-eval and MTEB folders directly."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

from harness.errors import UserError
from harness.results import writable_folder


def say(text: str = "") -> None:
    print(text, flush=True)


def export(args) -> int:
    from harness import exchange
    from harness.report.frame import check_roots

    check_roots(args.results)
    if args.format != "csv":
        if args.tidy or args.leaderboard:
            raise UserError(f"--tidy and --leaderboard write CSV files, not --format {args.format}; drop them or "
                            "export twice")
        if not args.out:
            raise UserError(f"--format {args.format} writes a folder; add --out DIR")
        writable_folder(args.out, "--out")
        paths = exchange.export(args.format, args.results, args.out)
        say(f"wrote {len(paths)} {args.format} files to {args.out}")
        return 0
    leaderboard = args.leaderboard
    if not args.tidy and not leaderboard:
        if not args.out:
            raise UserError("nothing to export; add --out DIR (leaderboard.csv there), --tidy OUT.csv and/or "
                            "--leaderboard OUT.csv, or --format lm-eval|mteb|every-eval-ever --out DIR")
        leaderboard = os.path.join(args.out, "leaderboard.csv")
    for flag, path in (("--tidy", args.tidy), ("--leaderboard", leaderboard)):
        if path:
            writable_folder(os.path.dirname(os.path.abspath(path)), flag)
    if args.tidy:
        from harness.results import tidy_frame

        frame = tidy_frame(*args.results)
        frame.to_csv(args.tidy, index=False)
        say(f"wrote {len(frame)} rows to {args.tidy}")
    if leaderboard:
        from harness.report import write_leaderboard

        board = write_leaderboard(args.results, leaderboard)
        say(f"leaderboard {leaderboard}: {len(board)} models")
    return 0


def import_cmd(args) -> int:
    from harness import exchange

    if args.arch not in (None, "encoder", "decoder"):
        raise UserError(f"unknown --arch '{args.arch}'; use encoder or decoder")
    items = []
    for folder in args.folders:  # every folder read and checked before anything is written
        items += exchange.read(folder, args.format, arch=args.arch, pair=args.pair)
    writable_folder(args.output_path)
    written, kept = exchange.store(args.output_path, items)
    say(f"imported {len(written)} results into {args.output_path}"
        + (f"; {len(kept)} already there, kept as they were" if kept else ""))
    if written:
        say(f"compare them: ettin-eval report {args.output_path}")
    return 0


@contextmanager
def readable_roots(roots: list[str]):
    """``roots`` with each lm-eval or MTEB output folder imported into a temporary results store,
    removed afterwards: the report reads other tools' folders as it reads its own."""
    from harness import exchange

    with tempfile.TemporaryDirectory(prefix="ettin-eval-imported.") as scratch:
        out = []
        for i, root in enumerate(roots):
            kind = exchange.detect(str(root))
            if kind is None:
                out.append(str(root))
                continue
            folder = os.path.join(scratch, str(i))
            exchange.store(folder, exchange.read(str(root), kind))
            out.append(folder)
        yield out


def report(args) -> int:
    from harness.report import build_report, write_report

    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be 0 or more, not {args.bootstrap}")
    if args.out:
        writable_folder(args.out, "--out")
    with readable_roots(args.results) as roots:
        rep = build_report(roots, n_boot=args.bootstrap)
        say(rep.text())
        if args.out:
            paths = write_report(roots, args.out, report=rep)
            say(f"\nwrote {len(paths)} files to {args.out}: tables comparison.md/.tex/.csv, leaderboard.csv"
                + (", significance.csv" if "significance.csv" in paths else "")
                + f"; plots in {os.path.join(args.out, 'plots')}"
                + (f"; page {paths['index.html']}" if "index.html" in paths else ""))
    return 0
