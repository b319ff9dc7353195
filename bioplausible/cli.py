"""The ``bioplausible`` command.

    bioplausible list                                   experiments and model recipes
    bioplausible run NAME [--set k=v] [--out DIR] [--smoke] [--resume FILE]
    bioplausible report FILES_OR_DIRS... [--plot DIR] [--metric test_acc]
    bioplausible sweep NAME --grid k=v1,v2 [--grid ...] [--seeds N] [--workers K]
                       [--scheduler local|ADDRESS] [--out DIR] [--smoke] [--set k=v]
    bioplausible data path NAME | bioplausible data fetch NAME

A user error (wrong key, missing dataset, bad shape) prints one line ``error: ...`` and exits 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UserError


def _cmd_list(args):
    from .encoders import list_recipes
    from .experiment import list_experiments

    print("experiments (bioplausible run NAME):")
    for name, doc in list_experiments().items():
        print(f"  {name:<22} {doc}")
    print("model recipes (--set model=NAME):")
    for name, doc in list_recipes().items():
        print(f"  {name:<22} {doc}")
    return 0


def _cmd_run(args):
    from .experiment import load_experiment, run_experiment

    mod = load_experiment(args.name)
    run_experiment(mod, args.set, args.out, args.smoke, args.resume, not args.no_progress)
    return 0


def summarize_run(path) -> dict:
    """One row of the report table: the run's config essentials and its last epoch metrics."""
    from .store import read_run

    info = read_run(path)
    cfg = info.get("config", {})
    row = {"run": Path(path).stem}
    for k in ("arm", "dataset", "model", "seed"):
        if k in cfg:
            row[k] = cfg[k]
    ep = info["metrics"].get("epoch", {})
    if ep:
        n = len(next(iter(ep.values())))
        for k, v in ep.items():
            if n and k not in ("train_seconds",):
                row[k] = float(v[-1])
    for k, v in info.get("results", {}).items():
        if hasattr(v, "shape") and getattr(v, "shape", None) == ():
            row[k] = float(v)
        elif isinstance(v, (int, float)):
            row[k] = float(v)
    return row


def _cmd_report(args):
    from .experiment import format_table
    from .store import find_runs
    from .sweep import is_sweep_dir, report

    sweeps = [f for f in args.files if Path(f).is_dir() and is_sweep_dir(f)]
    for i, d in enumerate(sweeps):          # a sweep folder: mean ± sd over seeds, per parameter
        if i:
            print()
        fig_dir = (Path(args.plot) / Path(d).resolve().name) if args.plot and len(sweeps) > 1 \
            else args.plot
        report(d, metric=args.metric, figures_dir=fig_dir,
               columns=args.columns.split(",") if args.columns else None)
    rest = [f for f in args.files if f not in sweeps]
    if sweeps and not rest:
        return 0
    if sweeps:
        print()
    paths = find_runs(rest)
    if not paths:
        raise UserError(f"no run files (*.h5) found in {', '.join(map(str, rest))}")
    rows = [summarize_run(p) for p in paths]
    if args.columns:
        keep = ["run"] + args.columns.split(",")
        rows = [{k: r.get(k) for k in keep} for r in rows]
    print(format_table(rows))
    if args.plot:
        from .plots import learning_curves

        labels = args.labels.split(",") if args.labels else None
        out = learning_curves(paths, Path(args.plot) / f"curves-{args.metric}.png", metric=args.metric,
                              labels=labels)
        print(f"figure: {out}")
    return 0


def _cmd_sweep(args):
    from .sweep import parse_grid, run_sweep

    grid = parse_grid(args.grid)
    if not grid and args.seeds is None:
        raise UserError("nothing to sweep: give --grid key=v1,v2 and/or --seeds N")
    try:
        summary = run_sweep(args.name, grid, seeds=args.seeds, sets=args.set, out=args.out,
                            workers=args.workers, scheduler=args.scheduler, smoke=args.smoke,
                            retry_failed=not args.no_retry, connect_timeout=args.timeout)
    except KeyboardInterrupt:
        print("interrupted: finished points are kept and interrupted ones keep their last "
              "checkpoint; run the same command again to continue", file=sys.stderr)
        return 130
    if summary["failed"]:
        print(f"{len(summary['failed'])} point(s) failed (errors in {summary['manifest']}; "
              f"see bioplausible report {summary['out']}); re-run the same command to retry them",
              file=sys.stderr)
        return 1
    return 0


def _cmd_data(args):
    from . import datasets

    if args.action == "path":
        ims = datasets.load(args.name, "train", download=False)
        print(f"{ims.source}" + (f"\ncache: {ims.cache}" if getattr(ims, "cache", None) else ""))
    else:
        train, test = datasets.load_pair(args.name)
        print(f"{args.name}: train {train.x.shape}, test {test.x.shape} from {train.source}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .experiment import build_parser as exp_parser

    p = argparse.ArgumentParser(prog="bioplausible", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list experiments and model recipes").set_defaults(fn=_cmd_list)
    r = sub.add_parser("run", help="run an experiment", parents=[exp_parser()], add_help=False)
    r.add_argument("name", help="experiment name (see: bioplausible list)")
    r.set_defaults(fn=_cmd_run)
    rep = sub.add_parser("report", help="table (and figures) from run files or a sweep folder")
    rep.add_argument("files", nargs="+", type=Path,
                     help="run files, folders holding them, or sweep folders (mean ± sd over seeds)")
    rep.add_argument("--plot", metavar="DIR", default=None, help="write figures to DIR")
    rep.add_argument("--metric", default="test_acc", help="metric for the learning-curve figure")
    rep.add_argument("--columns", default=None, help="comma-separated columns to show")
    rep.add_argument("--labels", default=None,
                     help="comma-separated legend labels for the learning-curve figure, one per run "
                          "file in the order of the table's rows (default: the arm, plus the folder when runs of "
                          "one arm differ in more than the seed)")
    rep.set_defaults(fn=_cmd_report)
    sw = sub.add_parser("sweep", help="run an experiment over a parameter grid and seeds",
                        description="Run an experiment at every point of a grid x seeds, in local "
                        "processes (default) or on Dask; re-running continues where it stopped.")
    sw.add_argument("name", help="experiment name (see: bioplausible list) or path to a .py file")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="values of one parameter (repeatable; points = all combinations)")
    sw.add_argument("--seeds", default=None, metavar="N",
                    help="seeds 0..N-1 (or a list 0,4,7) for every grid point")
    sw.add_argument("--workers", type=int, default=None, metavar="K",
                    help="parallel workers (default: number of cores; 0 = one by one here)")
    sw.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="run on Dask: 'local' (LocalCluster of K workers) or tcp://host:port")
    sw.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                    help="how long to try reaching the Dask scheduler (default 10)")
    sw.add_argument("--out", type=Path, default=None,
                    help="sweep folder (default runs/sweep-NAME); re-run to resume")
    sw.add_argument("--smoke", action="store_true", help="the experiment's tiny smoke settings")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="fixed override for every point (repeatable)")
    sw.add_argument("--no-retry", action="store_true",
                    help="on re-run, leave failed points failed")
    sw.set_defaults(fn=_cmd_sweep)
    d = sub.add_parser("data", help="find or fetch a dataset")
    d.add_argument("action", choices=["path", "fetch"])
    d.add_argument("name", help="fashion_mnist, mnist, cifar10, stl10")
    d.set_defaults(fn=_cmd_data)
    return p


def main(argv=None) -> int:
    from .experiment import guarded

    args = build_parser().parse_args(argv)
    return guarded(lambda: args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
