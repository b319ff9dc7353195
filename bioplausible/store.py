"""One self-describing HDF5 file per run: write, append, checkpoint, resume, read.

A run file (``run_dir/NAME.h5``) holds everything needed to interpret and continue a run::

    /                  attrs: format, format_version, name, config (JSON), recipe (text), seed,
                              created, versions (JSON: python, numpy, numba, h5py, scipy,
                              bioplausible), git_revision, hostname, command
    /metrics/<group>/<key>    resizable 1-D float64 datasets, one row per ``run.log(group, ...)``
    /results/<name>           evaluation results (scalars, arrays, strings; dicts become groups)
    /checkpoint/state/<key>   last checkpoint: flattened weights + optimiser state
    /checkpoint               attrs: step (JSON), rng_state (JSON), metrics_rows (JSON), time

Atomicity
---------
The run's content lives in memory; :meth:`Run.flush` writes the *whole* file to a temporary file in
the same folder (``.NAME.h5.tmp-PID-XXXX``), fsyncs it and ``os.replace``-s it onto ``NAME.h5``
(then fsyncs the folder).  A process killed at any moment (even SIGKILL) therefore leaves either
the previous complete file or the new complete file, never a half-written one.  ``flush`` runs on
every :meth:`Run.checkpoint`, on :meth:`Run.close` (and leaving a ``with`` block), and from
:meth:`Run.log` when more than ``flush_interval`` seconds passed since the last write.
``log`` itself only appends to in-memory lists.  Metrics logged after the last flush may be lost.
Stale temporary files left by killed processes are removed when a run is created or resumed and
are never listed by :func:`find_runs`.

Resume and metrics rows
-----------------------
Each checkpoint records, per metrics group, how many rows had been logged at that moment.
:meth:`Run.resume` (with ``truncate=True``, the default) drops the rows logged *after* the last
checkpoint -- the resumed run will recompute them, so an epoch is never recorded twice.  A file
without a checkpoint is resumed with empty metrics (the run restarts from scratch).  Pass
``truncate=False`` to reopen a finished run only to add results, keeping every row.

Typical use::

    with Run.create(out_dir, "clapp-s0", config, seed=0, recipe_text=toml_text) as run:
        for epoch in range(epochs):
            ...
            run.log("epoch", epoch=epoch, loss=loss, probe_acc=acc)
            run.checkpoint({**weights, **optim_state}, {"epoch": epoch + 1}, rng_state=rng)
        run.save_result("probe", {"block3": 0.61})
"""
from __future__ import annotations

import json
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

FORMAT = "bioplausible-run"
FORMAT_VERSION = 1
_TMP_MARK = ".tmp-"

__all__ = ["Run", "read_run", "find_runs", "rng_from_state", "FORMAT", "FORMAT_VERSION"]


# ----------------------------------------------------------------------------- provenance helpers

def _package_version(dist: str, module: str | None = None) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        pass
    if module is not None:
        mod = sys.modules.get(module)
        if mod is None:
            try:
                import importlib

                mod = importlib.import_module(module)
            except Exception:
                return "unknown"
        return str(getattr(mod, "__version__", "unknown"))
    return "unknown"


def package_versions() -> dict:
    """Versions of Python and the packages a run's numbers depend on (strings, 'unknown' if absent)."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": _package_version("numba"),
        "h5py": _package_version("h5py", "h5py"),
        "scipy": _package_version("scipy"),
        "bioplausible": _package_version("bioplausible", "bioplausible"),
    }


def git_revision(path: str | os.PathLike | None = None) -> str:
    """``git rev-parse HEAD`` of the repository holding *path* (default: this package), with a
    ``-dirty`` suffix if tracked files are modified; ``"unknown"`` if git or the repo is missing."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        out = rev.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "diff", "--quiet", "HEAD", "--"],
                               capture_output=True, timeout=5)
        return out + ("-dirty" if dirty.returncode == 1 else "")
    except Exception:
        return "unknown"


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in sys.argv)


def rng_from_state(rng_state: Mapping) -> np.random.Generator:
    """A new ``numpy.random.Generator`` restored from ``Generator.bit_generator.state``."""
    bitgen_cls = getattr(np.random, rng_state["bit_generator"])
    bitgen = bitgen_cls()
    bitgen.state = dict(rng_state)
    return np.random.Generator(bitgen)


# ----------------------------------------------------------------------------- file helpers

def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{kind} name must be a non-empty string without '/': got {name!r}")
    return name


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}{_TMP_MARK}"


def _pid_alive(pid: int) -> bool:
    """True while process *pid* runs.  A zombie (killed, not yet reaped -- common for orphaned
    workers in containers whose PID 1 does not reap) counts as dead: it can write nothing more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _clean_stale_tmp(path: Path) -> list[Path]:
    """Remove temporary files of *path* left behind by processes that no longer run."""
    removed = []
    prefix = _tmp_prefix(path)
    if not path.parent.is_dir():
        return removed
    for p in path.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        try:
            pid = int(p.name[len(prefix):].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid() or not _pid_alive(pid):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_run_file(path: Path):
    """Open *path* read-only, raising one-line errors for missing, non-HDF5 or foreign files."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    if not h5py.is_hdf5(str(path)):
        raise ValueError(f"{path}: not an HDF5 file, so not a bioplausible run file")
    try:
        f = h5py.File(str(path), "r")
    except OSError as exc:
        raise ValueError(f"{path}: cannot be opened as HDF5 ({exc})") from None
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        f.close()
        raise ValueError(f"{path}: an HDF5 file but not a bioplausible run file "
                         f"(attribute 'format' is {fmt!r}, expected {FORMAT!r})")
    version = int(f.attrs.get("format_version", -1))
    if version > FORMAT_VERSION:
        f.close()
        raise ValueError(f"{path}: run file format version {version} is newer than this "
                         f"bioplausible understands ({FORMAT_VERSION}); upgrade bioplausible")
    return f


def _attr_value(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _write_value(group, name: str, value) -> None:
    """Write a result value: dict -> subgroup, str -> string dataset, else numeric array."""
    if isinstance(value, Mapping):
        sub = group.create_group(name)
        for k, v in value.items():
            _write_value(sub, _check_name("result", str(k)), v)
        return
    if isinstance(value, str):
        import h5py

        group.create_dataset(name, data=value, dtype=h5py.string_dtype())
        return
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind in "USV":
        if arr.dtype.kind == "U":
            import h5py

            group.create_dataset(name, data=arr.astype(object), dtype=h5py.string_dtype())
            return
        raise TypeError(f"result {name!r}: cannot store a value of type {type(value).__name__}; "
                        "use numbers, arrays, strings or dicts of them")
    group.create_dataset(name, data=arr)


def _read_value(obj):
    import h5py

    if isinstance(obj, h5py.Group):
        return {k: _read_value(obj[k]) for k in obj.keys()}
    if obj.dtype.kind == "O" or h5py.check_string_dtype(obj.dtype) is not None:
        data = obj.asstr()[()]
        if isinstance(data, np.ndarray):
            return data.astype(str)
        return data
    data = obj[()]
    if isinstance(data, np.ndarray) and data.ndim == 0:
        return data.item()
    if isinstance(data, np.generic):
        return data.item()
    return data


def _read_datasets(group, prefix: str = "") -> dict:
    """Flatten every dataset under *group* into ``{"a/b/c": array}``."""
    out = {}

    def visit(name, obj):
        import h5py

        if isinstance(obj, h5py.Dataset):
            out[prefix + name] = obj[()]

    group.visititems(visit)
    return out


def _read_metrics(f) -> tuple[dict, dict]:
    metrics, rows = {}, {}
    if "metrics" not in f:
        return metrics, rows
    for gname, grp in f["metrics"].items():
        cols = {k: np.asarray(grp[k][()], dtype=np.float64) for k in grp.keys()}
        n = int(grp.attrs.get("rows", max((len(c) for c in cols.values()), default=0)))
        metrics[gname] = {k: c[:n] for k, c in cols.items()}
        rows[gname] = n
    return metrics, rows


def _read_checkpoint_meta(f) -> dict | None:
    if "checkpoint" not in f:
        return None
    ck = f["checkpoint"]
    return {
        "step": json.loads(_attr_value(ck.attrs["step"])),
        "rng_state": json.loads(_attr_value(ck.attrs.get("rng_state", "null"))),
        "metrics_rows": json.loads(_attr_value(ck.attrs.get("metrics_rows", "{}"))),
        "time": _attr_value(ck.attrs.get("time", "")),
    }


# ----------------------------------------------------------------------------- the run

class Run:
    """An open run: metrics, results and the last checkpoint in memory, written atomically.

    Create with :meth:`Run.create` or :meth:`Run.resume`, not with the constructor.

    Attributes: ``path`` (Path of the ``.h5`` file), ``name``, ``config`` (dict), ``seed`` (int),
    ``attrs`` (dict of the file's root attributes, config included as JSON text),
    ``results`` (dict), ``flush_interval`` (seconds, or None for flush only on checkpoint/close).
    """

    def __init__(self, path: Path, attrs: dict, *, flush_interval: float | None = 60.0):
        self.path = Path(path)
        self.attrs = dict(attrs)
        self.flush_interval = flush_interval
        self.results: dict[str, Any] = {}
        self._metrics: dict[str, dict[str, list]] = {}
        self._rows: dict[str, int] = {}
        self._ck_state: dict[str, np.ndarray] | None = None
        self._ck_meta: dict | None = None
        self._closed = False
        self._last_flush = time.monotonic()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: str | os.PathLike, name: str, config: Mapping, seed: int,
               recipe_text: str = "", overwrite: bool = False,
               flush_interval: float | None = 60.0) -> "Run":
        """Start a new run file ``run_dir/NAME.h5`` (folder created if needed) and write it once.

        *config* must be JSON-serialisable (the resolved recipe as a dict); *recipe_text* is the
        recipe's source text (e.g. TOML).  Raises FileExistsError if the file exists and
        ``overwrite`` is False.
        """
        name = _check_name("run", str(name))
        if name.endswith(".h5"):
            name = name[:-3]
        run_dir = Path(run_dir)
        path = run_dir / f"{name}.h5"
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists: use --resume {path} to continue it, "
                                  "or choose a new --out (or overwrite=True)")
        try:
            config_json = json.dumps(dict(config), sort_keys=True)
        except TypeError as exc:
            raise TypeError(f"run config is not JSON-serialisable: {exc}") from None
        run_dir.mkdir(parents=True, exist_ok=True)
        _clean_stale_tmp(path)
        attrs = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "config": config_json,
            "recipe": str(recipe_text),
            "seed": int(seed),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": json.dumps(package_versions(), sort_keys=True),
            "git_revision": git_revision(),
            "hostname": socket.gethostname(),
            "command": _command_line(),
        }
        run = cls(path, attrs, flush_interval=flush_interval)
        run.flush()
        return run

    @classmethod
    def resume(cls, path: str | os.PathLike, truncate: bool = True,
               flush_interval: float | None = 60.0) -> "Run":
        """Reopen an existing run file; see the module docstring for what ``truncate`` drops.

        The file's attributes get ``resumed`` (a JSON list of times and command lines) appended.
        """
        path = Path(path)
        _clean_stale_tmp(path)
        with _open_run_file(path) as f:
            attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
            metrics, rows = _read_metrics(f)
            results = _read_value(f["results"]) if "results" in f else {}
            meta = _read_checkpoint_meta(f)
            state = (_read_datasets(f["checkpoint/state"])
                     if meta is not None and "checkpoint/state" in f else None)
        run = cls(path, attrs, flush_interval=flush_interval)
        run.results = results
        if truncate:
            keep = meta["metrics_rows"] if meta is not None else {}
            rows = {g: min(int(keep.get(g, 0)), n) for g, n in rows.items()}
        for g, cols in metrics.items():
            n = rows[g]
            run._metrics[g] = {k: list(np.asarray(c[:n], dtype=np.float64)) for k, c in cols.items()}
            run._rows[g] = n
        run._ck_state, run._ck_meta = state, meta
        history = json.loads(attrs.get("resumed", "[]"))
        history.append({"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "command": _command_line(), "truncate": bool(truncate)})
        run.attrs["resumed"] = json.dumps(history)
        run.flush()
        return run

    # -- properties -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.attrs["name"])

    @property
    def seed(self) -> int:
        return int(self.attrs["seed"])

    @property
    def config(self) -> dict:
        return json.loads(self.attrs["config"])

    def metrics(self, group: str) -> dict[str, np.ndarray]:
        """The rows of one metrics group logged so far (in memory), as float64 arrays."""
        if group not in self._metrics:
            raise KeyError(f"no metrics group {group!r} in run {self.name!r}; "
                           f"groups: {sorted(self._metrics)}")
        return {k: np.asarray(v, dtype=np.float64) for k, v in self._metrics[group].items()}

    def n_rows(self, group: str) -> int:
        return self._rows.get(group, 0)

    # -- writing --------------------------------------------------------------------------------
    def _check_open(self):
        if self._closed:
            raise RuntimeError(f"run {self.path} is closed")

    def log(self, group: str, **scalars) -> None:
        """Append one row to metrics *group* (cheap: in memory).  Keys absent from this row but
        present in the group get NaN; a new key gets NaN for all earlier rows."""
        self._check_open()
        _check_name("metrics group", group)
        cols = self._metrics.setdefault(group, {})
        n = self._rows.get(group, 0)
        for k, v in scalars.items():
            if k not in cols:
                cols[k] = [math.nan] * n
            try:
                cols[k].append(float(v) if v is not None else math.nan)
            except (TypeError, ValueError):
                raise TypeError(f"metric {group}/{k}: expected a number, got "
                                f"{type(v).__name__}") from None
        for k, col in cols.items():
            if len(col) == n:
                col.append(math.nan)
        self._rows[group] = n + 1
        if (self.flush_interval is not None
                and time.monotonic() - self._last_flush > self.flush_interval):
            self.flush()

    def save_result(self, name: str, value) -> None:
        """Store an evaluation result (number, array, string, or nested dict of them) under
        ``/results/NAME`` (replacing an earlier one).  Written at the next flush."""
        self._check_open()
        _check_name("result", name)
        self._validate_result(name, value)
        self.results[name] = value

    def _validate_result(self, name, value):
        if isinstance(value, Mapping):
            for k, v in value.items():
                _check_name("result", str(k))
                self._validate_result(f"{name}/{k}", v)
        elif not isinstance(value, str):
            arr = np.asarray(value)
            if arr.dtype == object or arr.dtype.kind in "SV":
                raise TypeError(f"result {name!r}: cannot store a value of type "
                                f"{type(value).__name__}; use numbers, arrays, strings or dicts")

    def checkpoint(self, state: Mapping[str, np.ndarray], step: Mapping,
                   rng_state: Mapping | np.random.Generator | None = None) -> None:
        """Record the last good state and write the file atomically.

        *state*: flat dict ``{"encoder/block0/conv/w": array, "optim/m/...": array}`` (copied now,
        so later in-place updates of the model do not change it); *step*: JSON-serialisable dict
        such as ``{"epoch": 3, "batch": 0}``; *rng_state*: ``Generator.bit_generator.state`` or
        the Generator itself.  Only the last checkpoint is kept.
        """
        self._check_open()
        copied = {}
        for k, v in state.items():
            k = str(k).strip("/")
            if not k or "//" in k:
                raise ValueError(f"checkpoint key {k!r} is not a valid path")
            copied[k] = np.array(v, copy=True)
        keys = set(copied)
        for k in keys:
            parts = k.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in keys:
                    raise ValueError(f"checkpoint keys {'/'.join(parts[:i])!r} and {k!r} clash: "
                                     "one is a folder of the other")
        if isinstance(rng_state, np.random.Generator):
            rng_state = rng_state.bit_generator.state
        try:
            step_json = json.dumps(dict(step), sort_keys=True)
            rng_json = json.dumps(rng_state)
        except TypeError as exc:
            raise TypeError(f"checkpoint step/rng_state not JSON-serialisable: {exc}") from None
        self._ck_state = copied
        self._ck_meta = {
            "step": json.loads(step_json),
            "rng_state": json.loads(rng_json),
            "metrics_rows": dict(self._rows),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.flush()

    def load_checkpoint(self):
        """``(state, step, rng_state)`` of the last checkpoint, or None if there is none.
        *state* maps the flat keys given to :meth:`checkpoint` to arrays (copies)."""
        if self._ck_meta is None or self._ck_state is None:
            return None
        state = {k: v.copy() for k, v in self._ck_state.items()}
        return state, dict(self._ck_meta["step"]), self._ck_meta["rng_state"]

    def _write(self, f) -> None:
        for k, v in self.attrs.items():
            f.attrs[k] = v
        mg = f.create_group("metrics")
        for g, cols in self._metrics.items():
            grp = mg.create_group(g)
            n = self._rows.get(g, 0)
            grp.attrs["rows"] = n
            for k, col in cols.items():
                data = np.asarray(col, dtype=np.float64)
                grp.create_dataset(k, data=data, maxshape=(None,), chunks=(256,))
        rg = f.create_group("results")
        for k, v in self.results.items():
            _write_value(rg, k, v)
        if self._ck_meta is not None:
            ck = f.create_group("checkpoint")
            ck.attrs["step"] = json.dumps(self._ck_meta["step"], sort_keys=True)
            ck.attrs["rng_state"] = json.dumps(self._ck_meta["rng_state"])
            ck.attrs["metrics_rows"] = json.dumps(self._ck_meta["metrics_rows"], sort_keys=True)
            ck.attrs["time"] = self._ck_meta["time"]
            sg = ck.create_group("state")
            for k, v in (self._ck_state or {}).items():
                sg.create_dataset(k, data=v)

    def flush(self) -> None:
        """Write the whole run to a temporary file, fsync, and atomically rename it into place."""
        import h5py

        self._check_open()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f"{_tmp_prefix(self.path)}{os.getpid()}-{os.urandom(4).hex()}"
        try:
            with h5py.File(str(tmp), "w") as f:
                self._write(f)
            fd = os.open(str(tmp), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
        _fsync_dir(self.path.parent)
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close; further writes raise.  Closing twice is harmless."""
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return f"Run({str(self.path)!r}, {state}, groups={sorted(self._metrics)})"


# ----------------------------------------------------------------------------- reading

def read_run(path: str | os.PathLike) -> dict:
    """Everything a report needs from one run file, without the checkpoint weights::

        {"path": Path, "name": str, "attrs": dict, "config": dict, "recipe": str, "seed": int,
         "versions": dict, "metrics": {group: {key: float64 array}}, "results": dict,
         "checkpoint": {"step", "rng_state", "metrics_rows", "time"} or None}

    Raises FileNotFoundError for a missing file and a one-line ValueError naming the file for a
    non-HDF5 or foreign HDF5 file.
    """
    path = Path(path)
    with _open_run_file(path) as f:
        attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        metrics, _ = _read_metrics(f)
        results = _read_value(f["results"]) if "results" in f else {}
        ck = _read_checkpoint_meta(f)
    return {
        "path": path,
        "name": attrs.get("name", path.stem),
        "attrs": attrs,
        "config": json.loads(attrs.get("config", "{}")),
        "recipe": attrs.get("recipe", ""),
        "seed": attrs.get("seed"),
        "versions": json.loads(attrs.get("versions", "{}")),
        "metrics": metrics,
        "results": results,
        "checkpoint": ck,
    }


def _is_run_file(path: Path) -> bool:
    try:
        with _open_run_file(path):
            return True
    except (ValueError, OSError):
        return False


def find_runs(paths_or_dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Run files among *paths_or_dirs*, sorted and without duplicates.

    A folder is searched recursively for ``*.h5`` files that are bioplausible run files (other
    HDF5 files, e.g. released weights, and temporary files are skipped); a file is returned as
    given (``read_run`` will complain if it is not a run); a pattern with ``*``/``?`` is globbed.
    A path that does not exist raises FileNotFoundError.
    """
    if isinstance(paths_or_dirs, (str, os.PathLike)):
        paths_or_dirs = [paths_or_dirs]
    found: list[Path] = []
    for entry in paths_or_dirs:
        p = Path(entry)
        if any(c in str(entry) for c in "*?["):
            anchor = Path(p.anchor) if p.is_absolute() else Path(".")
            rel = str(p.relative_to(p.anchor)) if p.is_absolute() else str(p)
            matches = sorted(anchor.glob(rel))
            found.extend(m for m in matches if m.is_file() and _TMP_MARK not in m.name
                         and _is_run_file(m))
        elif p.is_dir():
            for m in sorted(p.rglob("*.h5")):
                if m.is_file() and not m.name.startswith(".") and _is_run_file(m):
                    found.append(m)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    seen, out = set(), []
    for m in found:
        key = m.resolve()
        if key not in seen:
            seen.add(key)
            out.append(m)
    return sorted(out)
