"""The ``bioplausible`` command.

    bioplausible list                                   experiments and model recipes
    bioplausible run NAME [--set k=v] [--out DIR] [--smoke] [--resume FILE]
    bioplausible report FILES_OR_DIRS... [--plot DIR] [--metric test_acc]
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

    paths = find_runs(args.files)
    if not paths:
        raise UserError(f"no run files (*.h5) found in {', '.join(map(str, args.files))}")
    rows = [summarize_run(p) for p in paths]
    if args.columns:
        keep = ["run"] + args.columns.split(",")
        rows = [{k: r.get(k) for k in keep} for r in rows]
    print(format_table(rows))
    if args.plot:
        from .plots import learning_curves

        out = learning_curves(paths, Path(args.plot) / f"curves-{args.metric}.png", metric=args.metric)
        print(f"figure: {out}")
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
    rep = sub.add_parser("report", help="table (and figures) from run files")
    rep.add_argument("files", nargs="+", type=Path, help="run files or folders holding them")
    rep.add_argument("--plot", metavar="DIR", default=None, help="write figures to DIR")
    rep.add_argument("--metric", default="test_acc", help="metric for the learning-curve figure")
    rep.add_argument("--columns", default=None, help="comma-separated columns to show")
    rep.set_defaults(fn=_cmd_report)
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
