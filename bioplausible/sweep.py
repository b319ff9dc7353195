"""Parameter and seed sweeps: local processes by default, Dask for a cluster, nothing lost.

A *sweep* runs one experiment (any module with ``DEFAULTS`` and ``run(cfg, out, resume)``, see
``bioplausible.experiment``) at every point of a grid of parameters, for several seeds::

    bioplausible sweep supervised --grid lr=1e-3,3e-4 --grid weight_decay=0,1e-4 --seeds 3
    bioplausible sweep supervised --grid lr=1e-3,3e-4 --seeds 2 --scheduler local      # Dask LocalCluster
    bioplausible sweep supervised --grid lr=1e-3,3e-4 --seeds 2 --scheduler tcp://head:8786
    bioplausible report runs/sweep-supervised                                            # mean ± sd

or from Python::

    from bioplausible.sweep import run_sweep, report
    run_sweep("supervised", {"lr": [1e-3, 3e-4]}, seeds=3, out="runs/lr", workers=2)
    report("runs/lr")

Layout of a sweep folder ``OUT``::

    OUT/sweep.json                    the manifest (written atomically: temp file + fsync + rename)
    OUT/points/<name>/                one folder per point, named from its parameters,
                   *.h5               e.g. ``lr=0.001,weight_decay=0.0001,seed=1``; holding the
                   result.json        point's run file(s), its result (rows of the experiment's
                   log.txt            table, written atomically when the point finishes) and its log
    OUT/report/                       table.md, table.csv and one figure per swept parameter

The manifest records every point (its parameters, full config, folder) and its state:
``pending`` -> ``running`` -> ``done`` | ``failed`` (with the error's text and traceback).

Executors (chosen before any work starts; a bad choice is a one-line ``UserError``):

* a local process pool (default): ``concurrent.futures.ProcessPoolExecutor`` with K workers
  (``workers``; default: the number of cores), each limited to ``cores // K`` BLAS/numba threads;
  a worker process that dies takes its points back to the queue (each point at most
  ``max_attempts`` times);
* ``dask.distributed`` (the ``dask`` extra, imported only when used): ``scheduler="local"`` starts a
  ``LocalCluster`` of K single-threaded worker processes on loopback; ``scheduler="tcp://host:port"``
  uses a running cluster (whose workers must see the same file system and Python environment).
  Dask re-runs the point of a worker that dies on another worker;
* ``workers=0``: one point after the other in this process (debugging, references).

Nothing is lost:

* a point is done when its ``result.json`` exists, so re-running the same command skips every
  finished point (even one that finished after the manifest was last written) and restarts the
  others; a point whose folder holds one run file is resumed from that file's last checkpoint
  (``run(cfg, out, resume=that_file)``, see ``bioplausible.store``), so an interrupted run continues
  where it stopped instead of starting over;
* a failing point is recorded with its error and does not stop the others; failed points are
  tried again when the sweep is re-run (``retry_failed``);
* only one sweep process works on a folder at a time (an ``flock`` on ``OUT/.sweep.lock``).

Re-running with more seeds or more grid values adds points to the same sweep; re-running with
different fixed settings (``--set``, ``--smoke``) in the same folder is an error.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import json
import math
import os
import re
import socket
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .errors import UserError
from .store import _clean_stale_tmp, _fsync_dir, _tmp_prefix

MANIFEST = "sweep.json"
RESULT = "result.json"
LOCK = ".sweep.lock"
FORMAT = "bioplausible-sweep"
FORMAT_VERSION = 1
STATES = ("pending", "running", "done", "failed")
SEED_NAME = "seed"
# keys of an experiment's config that only change how a run is shown, never its numbers
_IGNORED_KEYS = ("progress",)

__all__ = ["Target", "Point", "resolve_target", "parse_grid", "expand", "run_sweep",
           "load_manifest", "aggregate", "report", "is_sweep_dir", "SweepError"]


class SweepError(UserError):
    """A sweep that cannot start: bad grid, unreachable scheduler, busy or foreign folder."""


# ============================================================================== targets

@dataclass
class Target:
    """What a sweep runs: ``entry(cfg, out, resume)`` of the module in ``file``.

    ``defaults``/``smoke``/``choices`` validate the grid (usually the module's DEFAULTS, SMOKE
    and CHOICES).  Workers import ``file`` by path, so it must be readable where they run.
    """
    name: str
    file: str
    entry: str = "run"
    defaults: dict = field(default_factory=dict)
    smoke: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)


_MODULE_CACHE: dict[str, Any] = {}


def _load_module_file(path: str):
    """Import a Python file by path (once per process)."""
    path = str(Path(path).resolve())
    mod = _MODULE_CACHE.get(path)
    if mod is not None:
        return mod
    stem = re.sub(r"\W", "_", Path(path).stem)
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    name = f"bioplausible_sweep_targets.{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SweepError(f"cannot import {path} as a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    _MODULE_CACHE[path] = mod
    return mod


def resolve_target(experiment, entry: str = "run") -> Target:
    """A ``Target`` from an experiment name (``experiments/NAME.py``), a path to a ``.py`` file
    defining ``DEFAULTS`` and ``run``, a module object, or a ``Target`` (returned as is)."""
    if isinstance(experiment, Target):
        return experiment
    if isinstance(experiment, (str, os.PathLike)):
        text = str(experiment)
        if text.endswith(".py") or os.sep in text:
            path = Path(text)
            if not path.is_file():
                raise SweepError(f"experiment file {text} does not exist")
            mod = _load_module_file(str(path))
            name = path.stem
        else:
            from .experiment import load_experiment

            mod = load_experiment(text)
            name = text
    else:
        mod = experiment
        name = getattr(mod, "__name__", "experiment").rsplit(".", 1)[-1]
    file = getattr(mod, "__file__", None)
    if not file:
        raise SweepError(f"experiment {name!r} has no source file: workers import it by path")
    for attr in ("DEFAULTS", entry):
        if not hasattr(mod, attr):
            raise SweepError(f"experiment {name!r} defines no {attr}")
    return Target(name=name, file=str(Path(file).resolve()), entry=entry,
                  defaults=dict(mod.DEFAULTS), smoke=dict(getattr(mod, "SMOKE", {}) or {}),
                  choices=dict(getattr(mod, "CHOICES", {}) or {}))


# ============================================================================== grids and points

@dataclass
class Point:
    """One run of a sweep: ``params`` are the swept values (seed included), ``config`` the
    experiment's full config, ``name`` a file-safe label made from ``params``."""
    name: str
    params: dict
    config: dict


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """``["lr=1e-3,3e-4", "arm=clapp,infonce"]`` -> ``{"lr": ["1e-3", "3e-4"], ...}``.

    Values stay text here (``expand`` coerces them to the type of the default); for a key whose
    default is a list, one value may hold several items joined by ``+`` (``arms=clapp+infonce``).
    """
    grid: dict[str, list[str]] = {}
    for item in items or []:
        if "=" not in item:
            raise SweepError(f"--grid expects key=v1,v2,..., got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise SweepError(f"--grid {item!r}: missing key before '='")
        if key in grid:
            raise SweepError(f"--grid {key} given twice; list all its values once: "
                             f"--grid {key}=v1,v2,...")
        values = [v.strip() for v in text.split(",")]
        if not text.strip() or all(not v for v in values):
            raise SweepError(f"--grid {key}=: empty value list; give at least one value, "
                             f"e.g. --grid {key}=a,b")
        if any(not v for v in values):
            raise SweepError(f"--grid {item!r}: empty value between commas")
        grid[key] = values
    return grid


def _did_you_mean(key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce_value(key: str, value, default, choices: dict):
    """One grid value, typed like ``default`` and checked against ``choices`` (the rules of
    ``experiment.apply_sets``; messages say --grid)."""
    from .experiment import apply_sets

    if isinstance(value, str):
        text = value.replace("+", ",") if isinstance(default, (list, tuple)) else value
    elif isinstance(value, bool) or value is None:
        text = str(value).lower() if isinstance(value, bool) else "None"
    elif isinstance(value, (list, tuple)):
        text = ",".join(str(v) for v in value)
    else:
        text = repr(value) if isinstance(value, float) else str(value)
    sub_choices = {key: choices[key]} if key in choices else None
    try:
        out = apply_sets({key: default}, [f"{key}={text}"], sub_choices)[key]
    except UserError as e:
        raise SweepError(str(e).replace("--set ", "--grid ", 1)) from None
    if isinstance(default, (list, tuple)) and not out:
        raise SweepError(f"--grid {key}: value {value!r} is an empty list")
    return out


def _check_sets_keys(defaults: dict, sets):
    for item in sets or []:
        if "=" in item:
            key = item.split("=", 1)[0].strip()
            if key not in defaults:
                raise SweepError(f"--set: unknown key {key!r}{_did_you_mean(key, defaults)}; "
                                 f"allowed: {', '.join(sorted(defaults))}")


def base_config(target: Target, sets=(), smoke: bool = False) -> dict:
    """The experiment's config before the grid: DEFAULTS, then SMOKE (``smoke``), then ``sets``."""
    from .experiment import apply_sets

    cfg = dict(target.defaults)
    if smoke:
        cfg.update(target.smoke)
    _check_sets_keys(cfg, sets)
    cfg = apply_sets(cfg, list(sets or []), target.choices or None)
    if "progress" in cfg:
        cfg["progress"] = False        # many workers' progress bars would only garble the terminal
    return cfg


def _seed_key(defaults: dict) -> str | None:
    if "seed" in defaults:
        return "seed"
    if "seeds" in defaults and isinstance(defaults["seeds"], (list, tuple)):
        return "seeds"
    return None


def _seed_list(seeds) -> list[int] | None:
    if seeds is None:
        return None
    if isinstance(seeds, bool):
        raise SweepError(f"--seeds expects a count or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise SweepError(f"--seeds must be at least 1, got {seeds}")
        return list(range(seeds))
    if isinstance(seeds, str):
        text = seeds.strip()
        try:
            if "," in text:
                out = [int(s) for s in text.split(",") if s.strip()]
            else:
                return _seed_list(int(text))
        except ValueError:
            raise SweepError(f"--seeds expects a count (3) or a list (0,4,7), got {seeds!r}") from None
    else:
        out = [int(s) for s in seeds]
    if not out:
        raise SweepError("--seeds: empty list of seeds")
    if len(set(out)) != len(out):
        raise SweepError(f"--seeds lists a seed twice: {out}")
    return out


def _fmt_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "+".join(_fmt_value(x) for x in v) or "none"
    text = re.sub(r"[^A-Za-z0-9.+\-]", "-", str(v))
    return text or "none"


def point_name(params: Mapping) -> str:
    """``{"lr": 0.001, "seed": 1}`` -> ``lr=0.001,seed=1`` (file-safe, at most ~150 characters)."""
    name = ",".join(f"{re.sub(r'[^A-Za-z0-9_.-]', '-', k)}={_fmt_value(v)}" for k, v in params.items())
    if len(name) > 150:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = name[:138] + "-" + digest
    return name


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def expand(target: Target, base: dict, grid, seeds=None) -> list[Point]:
    """Every point of ``grid`` x ``seeds``, validated and typed before anything runs.

    ``grid``: ``{key: [values]}`` (values typed or text; text ``"a,b"`` allowed), or a list of such
    dicts whose points are joined (the union; a point listed twice runs once).  Each key must be
    in the experiment's DEFAULTS and each value must fit its type and CHOICES.  ``seeds``: a count
    N (seeds 0..N-1), a list, or None (the config's own seed).  Seeds go to ``cfg["seed"]`` or,
    for an experiment with a ``seeds`` list, to ``cfg["seeds"] = [s]``.
    """
    grids = grid if isinstance(grid, (list, tuple)) else [grid or {}]
    typed_grids = []
    for g in grids:
        if not isinstance(g, Mapping):
            raise SweepError(f"a grid is a dict {{key: [values]}}, got {type(g).__name__}")
        tg = {}
        for key, values in g.items():
            if key not in base or key in _IGNORED_KEYS:
                allowed = [k for k in base if k not in _IGNORED_KEYS]
                raise SweepError(f"--grid: unknown key {key!r}{_did_you_mean(key, allowed)}; "
                                 f"allowed: {', '.join(sorted(allowed))}")
            if isinstance(values, str):
                values = parse_grid([f"{key}={values}"])[key]
            values = list(values) if isinstance(values, (list, tuple)) else [values]
            if not values:
                raise SweepError(f"--grid {key}=: empty value list; give at least one value, "
                                 f"e.g. --grid {key}=a,b")
            typed = []
            for v in values:
                tv = _coerce_value(key, v, base[key], target.choices)
                if tv not in typed:
                    typed.append(tv)
            tg[key] = typed
        typed_grids.append(tg)

    skey = _seed_key(base)
    seed_list = _seed_list(seeds)
    in_grid = [k for g in typed_grids for k in g if k in ("seed", "seeds")]
    if seed_list is not None:
        if skey is None:
            raise SweepError(f"experiment {target.name!r} has no 'seed' key, so --seeds cannot "
                             "vary it")
        if in_grid:
            raise SweepError("give seeds either with --seeds or with --grid seed=..., not both")
    swept = []
    for g in typed_grids:
        swept += [k for k in g if k not in swept]

    points: dict[str, Point] = {}
    by_config: set[str] = set()
    for g in typed_grids:
        keys = list(g)
        combos = [{}]
        for k in keys:
            combos = [{**c, k: v} for c in combos for v in g[k]]
        for combo in combos:
            for s in (seed_list if seed_list is not None else [None]):
                cfg = dict(base)
                cfg.update(combo)
                params = {k: cfg[k] for k in swept}
                if s is not None:
                    cfg[skey] = s if skey == "seed" else [s]
                    params[SEED_NAME] = s
                elif skey is not None and skey not in params:
                    sv = cfg[skey]
                    params[SEED_NAME] = sv[0] if skey == "seeds" and len(sv) == 1 else sv
                canon = _canon(cfg)
                if canon in by_config:
                    continue
                by_config.add(canon)
                name = point_name(params)
                if name in points:      # two configs with the same printed name: add a hash
                    name = f"{name}-{hashlib.sha1(canon.encode()).hexdigest()[:6]}"
                points[name] = Point(name, params, cfg)
    if not points:
        raise SweepError("the grid has no points")
    return list(points.values())


# ============================================================================== files

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")




def _jsonable(obj):
    """Rows of an experiment's table as JSON: numpy scalars -> numbers, NaN -> None, paths -> str."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return str(obj)
    item = getattr(obj, "item", None)          # numpy scalar / 0-d array
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return _jsonable(tolist())
    return str(obj)


def write_json_atomic(path: Path, data) -> None:
    """Write JSON to a temporary file in the same folder, fsync it, rename it onto ``path``:
    a process killed at any moment leaves the old or the new file, never half of one."""
    path = Path(path)
    tmp = path.parent / f"{_tmp_prefix(path)}{os.getpid()}-{os.urandom(4).hex()}"
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=False, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def _run_files(folder: Path) -> list[Path]:
    from .store import find_runs

    if not folder.is_dir():
        return []
    return find_runs(folder)


class _Lock:
    """An exclusive ``flock`` on ``OUT/.sweep.lock`` (released by the OS if the process dies)."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:          # not POSIX: no lock (one sweep per folder is then up to you)
            return self
        self.fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(self.fd, 64).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            self.fd = None
            raise SweepError(f"another sweep (pid {other}) is working in {self.path.parent}; "
                             "wait for it or use another --out") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# ============================================================================== the manifest

def is_sweep_dir(path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def load_manifest(out) -> dict:
    """The manifest of the sweep in folder ``out`` (a dict; see the module docstring)."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise SweepError(f"{out} holds no sweep ({MANIFEST} not found)")
    try:
        m = _read_json(path)
    except (OSError, ValueError) as e:
        raise SweepError(f"{path}: cannot read the sweep manifest ({e})") from None
    if m.get("format") != FORMAT:
        raise SweepError(f"{path} is not a bioplausible sweep manifest")
    return m


class _Manifest:
    def __init__(self, out: Path, data: dict):
        self.out, self.data = out, data
        self.index = {p["name"]: p for p in data["points"]}

    @classmethod
    def fresh(cls, out: Path, target: Target, base: dict, smoke: bool, sets) -> "_Manifest":
        return cls(out, {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "experiment": target.name,
            "target": {"file": target.file, "entry": target.entry},
            "smoke": bool(smoke), "sets": list(sets or []),
            "base": _jsonable(base), "seed_key": _seed_key(base),
            "created": _now(), "updated": _now(), "host": socket.gethostname(),
            "command": " ".join(sys.argv), "sessions": [], "points": [],
        })

    def check_compatible(self, target: Target, base: dict):
        old = self.data
        if old.get("experiment") != target.name:
            raise SweepError(f"{self.out} holds a sweep of {old.get('experiment')!r}, not "
                             f"{target.name!r}; use another --out")
        new_base = _jsonable(base)
        if old.get("base") != new_base:
            diff = [k for k in sorted(set(old.get("base", {})) | set(new_base))
                    if old.get("base", {}).get(k) != new_base.get(k)]
            k = diff[0] if diff else "?"
            raise SweepError(f"{self.out} holds a sweep with other fixed settings ({k}: "
                             f"{old.get('base', {}).get(k)!r} there, {new_base.get(k)!r} now); "
                             "re-run with the same --set/--smoke, or use another --out")

    def add(self, p: Point) -> dict:
        entry = self.index.get(p.name)
        cfg = _jsonable(p.config)
        if entry is not None:
            if entry["config"] != cfg:
                raise SweepError(f"point {p.name} exists in {self.out} with another config; "
                                 "use another --out")
            return entry
        entry = {"name": p.name, "params": _jsonable(p.params), "config": cfg,
                 "dir": f"points/{p.name}", "state": "pending", "error": None,
                 "attempts": 0, "started": None, "finished": None, "seconds": None,
                 "worker": None, "resumed": False, "rows": [], "files": []}
        self.data["points"].append(entry)
        self.index[p.name] = entry
        return entry

    def save(self):
        self.data["updated"] = _now()
        write_json_atomic(self.out / MANIFEST, self.data)


# ============================================================================== one point (worker side)

def _worker_init(threads: int) -> None:
    """Process-pool worker setup: ``threads`` BLAS/numba threads, die with the parent (Linux)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "numpy" in sys.modules:          # numpy came in before us (e.g. with the __main__ module)
        with contextlib.suppress(Exception):
            from threadpoolctl import threadpool_limits

            threadpool_limits(threads)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes
            import signal

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG: no orphan keeps writing files
            if os.getppid() == 1:              # the parent died before prctl
                os._exit(1)


def run_point(spec: dict) -> dict:
    """Run one point (in a worker): ``spec`` = {name, file, entry, config, dir}.

    Resumes the point's run file if its folder holds exactly one, sends the experiment's output
    to ``DIR/log.txt``, writes ``DIR/result.json`` atomically when it succeeds, and returns a
    dict with ``state`` "done" (rows, files) or "failed" (error, traceback).  Never raises for an
    error of the experiment: a failing point must not stop the others.
    """
    t0 = time.perf_counter()
    folder = Path(spec["dir"])
    info = {"name": spec["name"], "worker": f"{socket.gethostname()}:{os.getpid()}",
            "started": _now()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _clean_stale_tmp(folder / RESULT)
        existing = _run_files(folder)
        resume = existing[0] if len(existing) == 1 else None
        mod = _load_module_file(spec["file"])
        fn = getattr(mod, spec["entry"])
        with open(folder / "log.txt", "a") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            print(f"== {_now()} {info['worker']}: "
                  + (f"resuming {resume.name}" if resume else "starting"), flush=True)
            rows = fn(dict(spec["config"]), folder, resume)
            print(f"== {_now()} finished", flush=True)
        if isinstance(rows, Mapping):
            rows = [rows]
        rows = _jsonable(list(rows or []))
        files = [str(p.relative_to(folder)) for p in _run_files(folder)]
        result = {**info, "state": "done", "config": _jsonable(spec["config"]), "rows": rows,
                  "files": files, "resumed": resume is not None, "finished": _now(),
                  "seconds": time.perf_counter() - t0}
        write_json_atomic(folder / RESULT, result)
        return result
    except Exception as e:           # noqa: BLE001 -- recorded, reported, never swallowed silently
        msg = " ".join(str(e).split()) or type(e).__name__
        return {**info, "state": "failed", "error": f"{type(e).__name__}: {msg}"[:2000],
                "traceback": traceback.format_exc()[-8000:], "finished": _now(),
                "seconds": time.perf_counter() - t0}


def _point_done(folder: Path, config: dict) -> dict | None:
    """The result of a point that finished (``result.json`` present, same config), else None."""
    path = folder / RESULT
    if not path.is_file():
        return None
    try:
        res = _read_json(path)
    except (OSError, ValueError):
        return None
    if res.get("state") != "done" or res.get("config") != config:
        return None
    return res


# ============================================================================== executors

class _Serial:
    kind = "serial"

    def __init__(self):
        self.workers = 1

    def run(self, specs, on_start, on_done, max_attempts):
        for s in specs:
            on_start(s)
            on_done(s, run_point(s))

    def close(self):
        pass


class _Pool:
    """``concurrent.futures.ProcessPoolExecutor`` (spawned workers); a broken pool (a worker
    killed or out of memory) is replaced and its unfinished points queued again."""
    kind = "processes"

    def __init__(self, workers: int):
        if workers < 1:
            raise SweepError(f"--workers must be at least 1 (0 = serial in this process), got {workers}")
        self.workers = workers
        self.threads = max(1, (os.cpu_count() or 1) // workers)

    def run(self, specs, on_start, on_done, max_attempts):
        import concurrent.futures as cf
        import multiprocessing
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context("spawn")
        queue = deque(specs)
        attempts: dict[str, int] = {}
        while queue:
            pool = cf.ProcessPoolExecutor(max_workers=min(self.workers, len(queue)), mp_context=ctx,
                                          initializer=_worker_init, initargs=(self.threads,))
            inflight: dict = {}
            broken = clean = False
            try:
                def fill():
                    while queue and len(inflight) < self.workers:
                        s = queue.popleft()
                        try:
                            fut = pool.submit(run_point, s)
                        except BrokenProcessPool:
                            queue.appendleft(s)
                            raise
                        inflight[fut] = s
                        on_start(s)

                fill()
                while inflight:
                    done, _ = cf.wait(list(inflight), return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        s = inflight.pop(fut)
                        try:
                            res = fut.result()
                        except BrokenProcessPool:
                            broken = True
                            inflight[fut] = s       # handled below with the others
                            continue
                        except Exception as e:  # noqa: BLE001 (pickling errors and the like)
                            res = {"state": "failed", "error": f"{type(e).__name__}: {e}",
                                   "traceback": traceback.format_exc()[-8000:]}
                        on_done(s, res)
                    if broken:
                        break
                    fill()
                clean = not broken
            except BrokenProcessPool:
                broken = True
            finally:
                # after Ctrl-C or a broken pool do not wait for points still running
                pool.shutdown(wait=clean, cancel_futures=True)
            if broken:
                lost = list(inflight.values())
                for s in reversed(lost):
                    attempts[s["name"]] = attempts.get(s["name"], 0) + 1
                    if attempts[s["name"]] >= max_attempts:
                        on_done(s, {"state": "failed", "error": (
                            f"WorkerDied: the worker process running this point died "
                            f"{attempts[s['name']]} times (killed or out of memory)")})
                    else:
                        queue.appendleft(s)

    def close(self):
        pass


class _Dask:
    """``dask.distributed``: a ``LocalCluster`` (``address="local"``) or a running scheduler."""
    kind = "dask"

    def __init__(self, address, workers: int | None, connect_timeout: float = 10.0,
                 memory_limit="auto"):
        try:
            import distributed
        except ImportError:
            raise SweepError("--scheduler needs dask.distributed: pip install "
                             "'bioplausible[dask]'") from None
        self.cluster = None
        self.own_client = True
        if not isinstance(address, str) and hasattr(address, "submit"):
            self.client, self.own_client = address, False           # a Client given from Python
        elif address == "local":
            n = workers or os.cpu_count() or 1
            self.cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, memory_limit=memory_limit, silence_logs=40)
            self.client = distributed.Client(self.cluster)
        else:
            addr = str(address if not hasattr(address, "scheduler_address")
                       else address.scheduler_address)
            if "://" not in addr:
                addr = "tcp://" + addr
            try:
                self.client = distributed.Client(addr, timeout=f"{connect_timeout}s")
            except Exception as e:   # noqa: BLE001 -- OSError, TimeoutError, ValueError(bad address)
                first = " ".join(str(e).split())[:200] or type(e).__name__
                raise SweepError(f"cannot reach the Dask scheduler at {addr} ({first}); is it "
                                 "running? start one with `dask scheduler` (+ `dask worker ADDRESS`), "
                                 "or drop --scheduler for local processes") from None
        try:
            self.client.wait_for_workers(1, timeout=connect_timeout)
        except Exception:  # noqa: BLE001
            self.close()
            raise SweepError(f"the Dask scheduler at {self.client.scheduler.address} has no "
                             f"workers (waited {connect_timeout:.0f} s); start some with "
                             "`dask worker ADDRESS`") from None
        self.workers = self.capacity()

    def capacity(self) -> int:
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # noqa: BLE001
            return 1

    def run(self, specs, on_start, on_done, max_attempts):
        from distributed import as_completed

        queue = deque(specs)
        inflight: dict = {}
        ac = as_completed()
        tag = os.urandom(3).hex()

        def fill():
            while queue and len(inflight) < self.capacity():
                s = queue.popleft()
                fut = self.client.submit(run_point, s, key=f"point-{s['name']}-{tag}", pure=False,
                                         retries=0)
                inflight[fut.key] = s
                ac.add(fut)
                on_start(s)

        fill()
        for fut in ac:
            s = inflight.pop(fut.key)
            try:
                res = fut.result()
            except Exception as e:   # noqa: BLE001 -- KilledWorker (died too often), lost scheduler
                msg = " ".join(str(e).split())[:1000]
                res = {"state": "failed", "error": f"{type(e).__name__}: {msg}",
                       "traceback": traceback.format_exc()[-8000:]}
            on_done(s, res)
            fut.release()
            fill()

    def close(self):
        if self.own_client:
            with contextlib.suppress(Exception):
                self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


def make_executor(workers: int | None = None, scheduler=None, connect_timeout: float = 10.0):
    """The executor for ``workers``/``scheduler``; connects (or starts) Dask now, so that an
    unreachable scheduler is an error before any work starts."""
    if scheduler is not None and scheduler != "":
        return _Dask(scheduler, workers, connect_timeout)
    if workers is None:
        workers = os.cpu_count() or 1
    if workers == 0:
        return _Serial()
    return _Pool(int(workers))


# ============================================================================== the sweep

def run_sweep(experiment, grid, seeds=None, *, sets=(), out=None, workers: int | None = None,
              scheduler=None, smoke: bool = False, entry: str = "run", retry_failed: bool = True,
              max_attempts: int = 3, connect_timeout: float = 10.0,
              echo: Callable[[str], None] | None = print) -> dict:
    """Run ``experiment`` at every point of ``grid`` x ``seeds``; returns a summary dict::

        {"out", "manifest", "points", "done", "failed", "ran", "skipped", "seconds", "executor"}

    ``experiment``: a name in ``experiments/``, a path to a ``.py`` file, a module or a ``Target``.
    ``grid``: ``{key: values}`` or a list of such dicts (union), see :func:`expand`.
    ``seeds``: count or list (None: the experiment's own seed).  ``sets``: ``["key=value"]``
    fixed for every point; ``smoke``: apply the experiment's SMOKE settings.
    ``workers``: size of the local pool (default: cores; 0 = serial in this process) or of the
    Dask ``LocalCluster``; ``scheduler``: None (local processes), ``"local"`` (Dask LocalCluster),
    an address ``"tcp://host:port"`` or a ``distributed.Client``.
    Everything is validated and the executor connected before any point runs.
    """
    say = echo or (lambda s: None)
    t0 = time.perf_counter()
    target = resolve_target(experiment, entry)
    base = base_config(target, sets, smoke)
    points = expand(target, base, grid, seeds)
    out = Path(out) if out is not None else Path("runs") / f"sweep-{target.name}"
    existing = None
    if (out / MANIFEST).is_file():
        existing = _Manifest(out, load_manifest(out))
        existing.check_compatible(target, base)
        for p in points:
            e = existing.index.get(p.name)
            if e is not None and e["config"] != _jsonable(p.config):
                raise SweepError(f"point {p.name} exists in {out} with another config; "
                                 "use another --out")
    executor = make_executor(workers, scheduler, connect_timeout)
    try:
        with _Lock(out):
            man = existing or _Manifest.fresh(out, target, base, smoke, sets)
            if existing is not None:       # re-read under the lock
                man = _Manifest(out, load_manifest(out))
            _clean_stale_tmp(out / MANIFEST)
            todo, skipped = [], []
            for p in points:
                entry_ = man.add(p)
                folder = out / entry_["dir"]
                res = _point_done(folder, entry_["config"])
                if res is not None:
                    if entry_["state"] != "done":      # finished after the manifest was written
                        _record(entry_, res)
                    skipped.append(p.name)
                    continue
                if entry_["state"] == "failed" and not retry_failed:
                    skipped.append(p.name)
                    continue
                if entry_["state"] in ("running", "done"):
                    entry_["state"] = "pending"       # interrupted (or its result file is gone)
                todo.append({"name": p.name, "file": target.file, "entry": target.entry,
                             "config": entry_["config"], "dir": str(folder.resolve())})
            man.data["sessions"].append({"started": _now(), "command": " ".join(sys.argv),
                                         "executor": executor.kind, "workers": executor.workers,
                                         "pid": os.getpid(), "to_run": len(todo)})
            man.save()
            total = len(points)
            say(f"sweep {target.name}: {total} points ({len(skipped)} finished earlier, "
                f"{len(todo)} to run) on {executor.kind} x{executor.workers} -> {out}")
            counter = {"n": 0}

            def on_start(s):
                e = man.index[s["name"]]
                e["state"], e["started"], e["error"] = "running", _now(), None
                e["attempts"] = int(e.get("attempts") or 0) + 1
                man.save()

            def on_done(s, res):
                e = man.index[s["name"]]
                _record(e, res)
                man.save()
                counter["n"] += 1
                extra = (f" ({res.get('seconds', 0):.1f} s{', resumed' if res.get('resumed') else ''})"
                         if res.get("state") == "done" else f": {e['error']}")
                say(f"[{counter['n']}/{len(todo)}] {e['state']:<6} {s['name']}{extra}")

            executor.run(todo, on_start, on_done, max_attempts)
    finally:
        executor.close()
    states = [man.index[p.name]["state"] for p in points]
    failed = [p.name for p, st in zip(points, states) if st == "failed"]
    summary = {"out": out, "manifest": out / MANIFEST, "points": len(points),
               "done": states.count("done"), "failed": failed, "ran": [s["name"] for s in todo],
               "skipped": skipped, "seconds": time.perf_counter() - t0, "executor": executor.kind}
    say(f"sweep {target.name}: {summary['done']}/{len(points)} done, {len(failed)} failed "
        f"in {summary['seconds']:.1f} s; table and figures: bioplausible report {out}")
    return summary


def _record(entry: dict, res: dict) -> None:
    entry["state"] = res.get("state", "failed")
    for k in ("worker", "finished", "seconds", "resumed"):
        if k in res:
            entry[k] = res[k]
    if entry["state"] == "done":
        entry["error"] = None
        entry.pop("traceback", None)
        entry["rows"] = res.get("rows", [])
        entry["files"] = [f"{entry['dir']}/{f}" for f in res.get("files", [])]
    else:
        entry["error"] = res.get("error") or "unknown error"
        if res.get("traceback"):
            entry["traceback"] = res["traceback"]


# ============================================================================== aggregation

_PATH_KEYS = ("run", "figure", "path", "file", "table")
_PREFERRED = ("test_acc", "probe2x2_b3", "probe_gap_b3", "knn_b3", "accuracy", "acc", "loss")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _rows_from_files(folder: Path) -> list[dict]:
    """Fallback when an experiment returns no rows: last epoch metrics + scalar results."""
    from .store import read_run

    rows = []
    for p in _run_files(folder):
        info = read_run(p)
        row = {}
        for k in ("arm",):
            if k in info["config"]:
                row[k] = info["config"][k]
        for k, v in info["metrics"].get("epoch", {}).items():
            if len(v):
                row[k] = float(v[-1])
        for k, v in info["results"].items():
            if getattr(v, "shape", None) == () or _is_number(v):
                row[k] = float(v)
        rows.append(row)
    return rows


def _unwrap(v):
    """A one-item list (``weight_decays=[0.01]`` of an experiment that loops over a list) is shown
    and plotted as its item."""
    return v[0] if isinstance(v, (list, tuple)) and len(v) == 1 else v


def _label_keys(rows: list[dict], skip) -> list[str]:
    keys = []
    for r in rows:
        for k, v in r.items():
            if k in skip or k in keys or k in _PATH_KEYS:
                continue
            if isinstance(v, str) and not re.search(r"\.(h5|png|md|csv|json)$", v) and "/" not in v:
                keys.append(k)
    return keys


def aggregate(out) -> dict:
    """Mean ± sd over seeds of every numeric column of the experiment's rows, per combination of
    swept parameters (seed excluded) and of the rows' labels (e.g. ``arm``).

    Returns ``{"params": [...], "labels": [...], "metrics": [...], "rows": [...],
    "points": {state: count}, "failed": [(name, error)]}``; each row holds the parameters,
    labels, ``seeds`` (how many finished) and ``M`` / ``M_sd`` for each metric ``M``.
    """
    m = load_manifest(out)
    out = Path(out)
    entries = m["points"]
    params = []
    for e in entries:
        params += [k for k in e["params"] if k not in params and k != SEED_NAME]
    seed_key = m.get("seed_key")
    records = []
    for e in entries:
        if e["state"] != "done":
            continue
        rows = e.get("rows") or _rows_from_files(out / e["dir"])
        for r in rows:
            rec = {"_point": e["name"], "_seed": e["params"].get(SEED_NAME)}
            rec.update({k: _unwrap(e["params"].get(k)) for k in params})
            rec.update({k: v for k, v in r.items() if k not in params})
            records.append(rec)
    skip = set(params) | {"_point", "_seed", "seed", "seeds", seed_key or "seed"}
    labels = _label_keys(records, skip)
    metrics = []
    for r in records:
        for k, v in r.items():
            if k in skip or k in labels or k in metrics or k in _PATH_KEYS or k.endswith("_sd"):
                continue
            if _is_number(v) or v is None:
                metrics.append(k)
    metrics = [k for k in metrics if any(_is_number(r.get(k)) for r in records)]
    groups: dict[str, list[dict]] = {}
    order = []
    for r in records:
        key = _canon([r.get(k) for k in params + labels])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(r)
    table = []
    for key in order:
        rs = groups[key]
        row = {k: rs[0].get(k) for k in params + labels}
        row["seeds"] = len({r["_seed"] for r in rs})
        for k in metrics:
            vals = [float(r[k]) for r in rs if _is_number(r.get(k)) and math.isfinite(float(r[k]))]
            n = len(vals)
            mean = sum(vals) / n if n else float("nan")
            sd = (math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1
                  else float("nan"))
            row[k], row[k + "_sd"] = mean, sd
        table.append(row)
    counts = {s: sum(e["state"] == s for e in entries) for s in STATES}
    failed = [(e["name"], e.get("error")) for e in entries if e["state"] == "failed"]
    return {"experiment": m.get("experiment"), "params": params, "labels": labels,
            "metrics": metrics, "rows": table, "points": counts, "failed": failed}


def _fmt_pm(mean, sd, digits=4) -> str:
    if mean is None or not math.isfinite(mean):
        return ""
    s = format(mean, f".{digits}g")
    if sd is not None and math.isfinite(sd):
        s += " ± " + format(sd, ".2g")
    return s


def display_rows(agg: dict, metrics: list[str] | None = None) -> list[dict]:
    """The aggregated table with ``mean ± sd`` strings (for printing and markdown)."""
    metrics = metrics or agg["metrics"]
    out = []
    for r in agg["rows"]:
        d = {k: _fmt_value(r[k]) if isinstance(r[k], (list, tuple)) else r[k]
             for k in agg["params"] + agg["labels"]}
        d["seeds"] = r["seeds"]
        for k in metrics:
            d[k] = _fmt_pm(r.get(k), r.get(k + "_sd"))
        out.append(d)
    return out


def choose_metric(agg: dict, metric: str | None = None) -> str | None:
    """``metric`` if the sweep has it, else the first of test_acc, probe2x2_b3, ... that varies,
    else the first varying column whose name says accuracy (acc, probe, knn), else the first."""
    if metric and metric in agg["metrics"]:
        return metric
    varying = [k for k in agg["metrics"]
               if len({r.get(k) for r in agg["rows"] if r.get(k) is not None}) > 1] or agg["metrics"]
    for k in _PREFERRED:
        if k in varying:
            return k
    for k in varying:
        if any(w in k for w in ("acc", "probe", "knn")):
            return k
    return varying[0] if varying else None


def _xy_axis(values):
    """x positions and scale for the values of one parameter."""
    nums = [v for v in values if _is_number(v)]
    if len(nums) == len(values):
        pos = sorted(set(float(v) for v in nums))
        scale = "linear"
        positive = [v for v in pos if v > 0]
        if len(positive) >= 2 and max(positive) / min(positive) >= 20:
            scale = "log" if len(positive) == len(pos) else "symlog"
        return {float(v): float(v) for v in pos}, scale, None
    labels = []
    for v in values:
        t = _fmt_value(v) if isinstance(v, (list, tuple)) else str(v)
        if t not in labels:
            labels.append(t)
    return {t: float(i) for i, t in enumerate(labels)}, "linear", labels


def plot_param(agg: dict, param: str, metric: str, out_png) -> Path:
    """``metric`` (mean ± sd over seeds) against ``param``, one line per combination of the
    other swept parameters and labels (e.g. one line per rule)."""
    from .plots import _plt, _save

    plt = _plt()
    rows = agg["rows"]
    others = [k for k in agg["params"] + agg["labels"] if k != param]
    xmap, scale, ticklabels = _xy_axis([r[param] for r in rows])
    lines: dict[str, list] = {}
    for r in rows:
        lab = ", ".join(f"{k}={_fmt_value(r[k]) if isinstance(r[k], (list, tuple)) else r[k]}"
                        for k in others if len({_canon(x.get(k)) for x in rows}) > 1)
        key = r[param]
        x = xmap[float(key)] if ticklabels is None else xmap[
            _fmt_value(key) if isinstance(key, (list, tuple)) else str(key)]
        lines.setdefault(lab or metric, []).append((x, r.get(metric), r.get(metric + "_sd"), r["seeds"]))
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for lab, pts in lines.items():
        pts = sorted(pts)
        xs = [p[0] for p in pts]
        ys = [p[1] if p[1] is not None else float("nan") for p in pts]
        es = [p[2] if p[2] is not None and math.isfinite(p[2]) else 0.0 for p in pts]
        ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, capsize=3, label=lab)
    if scale == "log":
        ax.set_xscale("log")
    elif scale == "symlog":
        pos = [x for x in xmap.values() if x > 0]
        ax.set_xscale("symlog", linthresh=min(pos))
    if ticklabels is not None:
        ax.set_xticks(list(xmap.values()))
        ax.set_xticklabels(ticklabels, rotation=20, fontsize=8)
    nseeds = sorted({r["seeds"] for r in rows})
    ax.set_xlabel(param)
    ax.set_ylabel(f"{metric} (mean ± sd, {'/'.join(map(str, nseeds))} seeds)")
    ax.set_title(f"{agg.get('experiment') or 'sweep'}: {metric} vs {param}", fontsize=10)
    ax.grid(alpha=0.3)
    if len(lines) > 1 or next(iter(lines), metric) != metric:
        ax.legend(fontsize=7)
    return _save(plt, fig, out_png)


def report(out, metric: str | None = None, figures_dir=None, columns: list[str] | None = None,
           echo: Callable[[str], None] | None = print) -> dict:
    """Aggregate the sweep in ``out``: print the table (mean ± sd over seeds), write
    ``report/table.md``, ``report/table.csv`` and one figure per swept parameter."""
    import csv

    from .experiment import format_table

    say = echo or (lambda s: None)
    out = Path(out)
    agg = aggregate(out)
    fig_dir = Path(figures_dir) if figures_dir else out / "report"
    fig_dir.mkdir(parents=True, exist_ok=True)
    shown = [c for c in (columns or agg["metrics"]) if c in agg["metrics"]]
    if columns and not shown:
        raise SweepError(f"--columns {','.join(columns)}: none of these is a metric of the sweep; "
                         f"metrics: {', '.join(agg['metrics'])}")
    disp = display_rows(agg, shown)
    cnt = agg["points"]
    head = (f"sweep of {agg['experiment']} in {out}: " + ", ".join(
        f"{cnt[s]} {s}" for s in STATES if cnt[s]))
    text = format_table(disp) if disp else "(no finished points yet)"
    say(head)
    say(text)
    for name, err in agg["failed"]:
        say(f"failed: {name}: {err}")
    md = fig_dir / "table.md"
    md.write_text(f"{head}\n\n{text}\n")
    csv_path = fig_dir / "table.csv"
    with open(csv_path, "w", newline="") as f:
        cols = agg["params"] + agg["labels"] + ["seeds"] + [
            c for k in agg["metrics"] for c in (k, k + "_sd")]
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in agg["rows"]:
            w.writerow({k: (_fmt_value(v) if isinstance(v, (list, tuple)) else v)
                        for k, v in r.items()})
    figs = []
    m = choose_metric(agg, metric)
    if metric and m != metric and agg["rows"]:
        say(f"(metric {metric!r} not in this sweep; plotting {m!r})")
    if m is not None and agg["rows"]:
        for p in agg["params"]:
            figs.append(plot_param(agg, p, m, fig_dir / f"{m}_vs_{p}.png"))
    say(f"table: {md}" + (f"\nfigures: {', '.join(str(f) for f in figs)}" if figs else ""))
    return {**agg, "metric": m, "figures": figs, "markdown": md, "csv": csv_path}
