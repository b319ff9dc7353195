"""What every experiment script shares: configuration, ``--set key=value``, ``--out``, ``--smoke``,
``--resume``, and the final table.

An experiment script in ``experiments/`` defines::

    DEFAULTS = {"dataset": "fashion_mnist", "epochs": 5, "lr": 1e-3, ...}
    SMOKE = {"epochs": 1, "max_batches": 3, ...}      # overrides for --smoke
    def run(cfg: dict, out: Path, resume: Path | None) -> list[dict]   # rows of the final table

and ends with ``if __name__ == "__main__": main_for(__doc__, DEFAULTS, SMOKE, run)``.
``bioplausible run NAME`` calls the same ``run``.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import sys
from pathlib import Path

from .errors import UserError

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"


def _coerce(key: str, text: str, default):
    """Parse ``text`` as the type of ``default``."""
    if isinstance(default, bool):
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UserError(f"--set {key}={text}: expected true or false")
    if isinstance(default, int):
        try:
            return int(float(text)) if float(text).is_integer() else int(text)
        except ValueError:
            raise UserError(f"--set {key}={text}: expected an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise UserError(f"--set {key}={text}: expected a number") from None
    if isinstance(default, (list, tuple)):
        items = [t for t in text.split(",") if t.strip()]
        proto = default[0] if default else ""
        return [_coerce(key, t.strip(), proto) for t in items]
    if default is None:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return text


def apply_sets(cfg: dict, sets: list[str], choices: dict | None = None) -> dict:
    """Apply ``key=value`` overrides; an unknown key or a value outside ``choices[key]`` is an
    error naming what is allowed."""
    cfg = dict(cfg)
    for item in sets or []:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in cfg:
            close = difflib.get_close_matches(key, cfg, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"unknown key {key!r}{hint}; allowed: {', '.join(sorted(cfg))}")
        cfg[key] = _coerce(key, text, cfg[key])
    for key, allowed in (choices or {}).items():
        vals = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
        for v in vals:
            if v not in allowed:
                raise UserError(f"{key}={v!r} is not allowed; choose from: "
                                f"{', '.join(map(str, allowed))}")
    return cfg


def list_experiments() -> dict[str, str]:
    """Name -> first line of the docstring of every script in ``experiments/``."""
    out = {}
    for f in sorted(EXPERIMENTS_DIR.glob("*.py")):
        if f.name.startswith("_"):
            continue
        first = ""
        try:
            doc = ast.get_docstring(ast.parse(f.read_text())) or ""
            first = doc.strip().splitlines()[0] if doc.strip() else ""
        except SyntaxError:
            first = "(syntax error)"
        out[f.stem] = first
    return out


def load_experiment(name: str):
    """Import ``experiments/NAME.py`` as a module."""
    path = EXPERIMENTS_DIR / f"{name}.py"
    if not path.is_file():
        avail = ", ".join(list_experiments()) or "(none found)"
        raise UserError(f"unknown experiment {name!r}; available: {avail}")
    spec = importlib.util.spec_from_file_location(f"bioplausible_experiments.{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    for attr in ("DEFAULTS", "run"):
        if not hasattr(mod, attr):
            raise UserError(f"experiment {name!r} defines no {attr}")
    return mod


def format_table(rows: list[dict], floatfmt: str = ".4g") -> str:
    """A markdown table of ``rows`` (list of dicts; columns in first-seen order)."""
    if not rows:
        return "(no rows)"
    cols = []
    for r in rows:
        cols += [k for k in r if k not in cols]

    def fmt(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells])


def run_experiment(mod, sets=None, out=None, smoke=False, resume=None, progress=True):
    """Resolve the config of experiment module ``mod`` and run it; returns the table rows."""
    cfg = dict(mod.DEFAULTS)
    if smoke:
        cfg.update(getattr(mod, "SMOKE", {}))
    cfg = apply_sets(cfg, sets, getattr(mod, "CHOICES", None))
    cfg["progress"] = progress if "progress" not in cfg else cfg["progress"] and progress
    name = mod.__name__.rsplit(".", 1)[-1]
    out = Path(out) if out else Path("runs") / name
    out.mkdir(parents=True, exist_ok=True)
    if resume is not None and not Path(resume).is_file():
        raise UserError(f"--resume {resume}: no such run file")
    rows = mod.run(cfg, out, Path(resume) if resume else None)
    print(format_table(rows))
    return rows


def build_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a default (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="folder for HDF5 run files and figures")
    p.add_argument("--smoke", action="store_true", help="tiny run of the same code path")
    p.add_argument("--resume", type=Path, default=None, help="continue a run file from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main_for(module_name: str, argv=None) -> int:
    """Entry point of ``python experiments/NAME.py``."""
    mod = sys.modules[module_name]
    parser = build_parser(mod.__doc__, prog=Path(sys.argv[0]).name)
    args = parser.parse_args(argv)

    def go():
        run_experiment(mod, args.set, args.out, args.smoke, args.resume, not args.no_progress)
        return 0
    return guarded(go)


def guarded(fn) -> int:
    """Run ``fn()`` as a command: a user error is one line on stderr and exit status 2, Ctrl-C
    says how to resume (130), anything else is a real bug and keeps its traceback."""
    try:
        return int(fn() or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run files keep their last checkpoint; continue with --resume FILE",
              file=sys.stderr)
        return 130


def open_run(out: Path, name: str, cfg: dict, seed: int, recipe_text: str = "",
             resume: Path | None = None):
    """The run file for one arm: ``resume`` reopens it, otherwise a new file ``out/NAME.h5``
    (``NAME-2.h5``, ``NAME-3.h5`` … when that exists, so nothing is ever overwritten)."""
    from . import store

    if resume is not None:
        return store.Run.resume(resume)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem, k = name, 1
    while (out / f"{stem}.h5").exists():
        k += 1
        stem = f"{name}-{k}"
    clean = {k: v for k, v in cfg.items() if k != "progress"}
    return store.Run.create(out, stem, clean, seed, recipe_text=recipe_text)
