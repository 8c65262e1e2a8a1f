"""What a report is computed from: run directories, the expected grid and each run's score.

A run directory is any folder with ``config.json`` and ``stats.jsonl`` (see
:mod:`pvr.bc.trainer`); it is finished when it holds ``done``. Only finished
runs enter the statistics; unfinished and absent ones are listed as missing.

The expected grid is ``tasks × encoders × seeds`` of an optional
``benchmark.json`` manifest (written by the benchmark runner, or by hand)::

    {"protocol": "cortexbench-dmc",          # name shown on every table and figure
     "tasks": ["DMC-walker-walk", ...],      # training --env strings, as in config.json "env"
     "encoders": ["r3m", "vc1_base"],        # --embedding_name values
     "seeds": [1, 2, 3],
     "metric": "final",                      # or "best": highest score over evaluations
     "normaliser": {"DMC-*": 1000},          # env name or glob -> max return; score = return / max
     "suites": {"MyEnv-v0": "mine"}}         # env name or glob -> suite (default: pvr's registry)

Every field is optional; without a manifest the grid is the union of the tasks,
encoders and seeds seen. Envs with no normaliser entry are scored by their
success rate; DMC envs default to return / 1000 (CortexBench's reading); an entry
of ``null`` scores that env by success instead. Unknown fields are ignored.
"""
from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from pvr.errors import PvrError
from pvr.utils.io import read_jsonl

MANIFEST = "benchmark.json"
TIMINGS = "timings.json"  # optional {"collect": s, "embed": s, ...}, written by whoever ran the stages
METRICS = ("final", "best")
DEFAULT_NORMALISER: dict[str, float | None] = {"DMC-*": 1000.0}


@dataclass
class Manifest:
    protocol: str | None = None
    tasks: list[str] | None = None
    encoders: list[str] | None = None
    seeds: list[int] | None = None
    metric: str | None = None
    normaliser: dict[str, float | None] = field(default_factory=dict)
    suites: dict[str, str] = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def read(cls, path: str | Path) -> "Manifest":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PvrError(f"cannot read the benchmark manifest {path} ({e}); fix or remove it") from None
        if not isinstance(d, dict):
            raise PvrError(f"{path} must hold a JSON object (see `pvr report --help` for its fields)")

        def strings(key: str) -> list[str] | None:
            v = d.get(key)
            if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                raise PvrError(f"{path}: {key!r} must be a list of strings")
            return v

        seeds = d.get("seeds")
        if seeds is not None and not (isinstance(seeds, list) and all(isinstance(s, int) for s in seeds)):
            raise PvrError(f"{path}: 'seeds' must be a list of integers")
        metric = d.get("metric")
        if metric is not None and metric not in METRICS:
            raise PvrError(f"{path}: 'metric' must be one of {', '.join(METRICS)}, not {metric!r}")
        norm = d.get("normaliser") or {}
        if not isinstance(norm, dict) or not all(v is None or (isinstance(v, (int, float)) and v > 0)
                                                 for v in norm.values()):
            raise PvrError(f"{path}: 'normaliser' must map env names or globs to a positive max return (or null)")
        suites = d.get("suites") or {}
        if not isinstance(suites, dict) or not all(isinstance(v, str) for v in suites.values()):
            raise PvrError(f"{path}: 'suites' must map env names or globs to suite names")
        protocol = d.get("protocol")
        return cls(protocol=None if protocol is None else str(protocol), tasks=strings("tasks"),
                   encoders=strings("encoders"), seeds=seeds, metric=metric,
                   normaliser={k: None if v is None else float(v) for k, v in norm.items()},
                   suites=dict(suites), source=path)


def _lookup(table: dict, name: str, default=None):
    if name in table:
        return table[name]
    for pattern, value in table.items():
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return default


class Scoring:
    """Suite and normalised score of an env: success in [0, 1], or return / max where a max is given."""

    def __init__(self, manifest: Manifest):
        self.normaliser = {**manifest.normaliser, **{k: v for k, v in DEFAULT_NORMALISER.items()
                                                     if k not in manifest.normaliser}}
        self.suites = manifest.suites
        self._suite_cache: dict[str, str] = {}

    def max_return(self, env: str) -> float | None:
        return _lookup(self.normaliser, env)

    def label(self, env: str) -> str:
        m = self.max_return(env)
        return "success" if m is None else f"return / {m:g}"

    def score(self, success: float, ret: float, env: str) -> float:
        m = self.max_return(env)
        return success if m is None else ret / m

    def suite(self, env: str) -> str:
        if env not in self._suite_cache:
            s = _lookup(self.suites, env)
            if s is None:
                try:
                    import pvr.envs

                    s = pvr.envs.suite_for(env).name
                except PvrError:
                    s = "other"
            self._suite_cache[env] = s
        return self._suite_cache[env]


@dataclass
class Evaluation:
    epoch: int
    success: float
    ret: float
    episodes: int


@dataclass
class Run:
    path: Path
    config: dict
    rows: list[dict]
    finished: bool
    curves: dict[str, list[Evaluation]] = field(default_factory=dict)  # env → evaluations in epoch order
    timings: dict[str, float] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # see stage_times()

    @property
    def encoder(self) -> str:
        return self.config["embedding_name"]

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def task(self) -> str:
        return self.config.get("env", "")

    @property
    def key(self) -> tuple[str, str, int]:
        return self.task, self.encoder, self.seed

    @property
    def last_epoch(self) -> int | None:
        return max((r["epoch"] for r in self.rows), default=None)

    @property
    def wall_time(self) -> dict[str, float]:
        """Seconds per recorded stage: ``timings.json`` if present, the stage times (:func:`stage_times`),
        plus train+eval from ``stats.jsonl``."""
        out = {**self.timings, **self.stages}
        # a row's time counts from the start of its session; a resumed run starts again from 0,
        # so the total is the sum of each session's last time (work after a session's last row is lost)
        times = [float(r["time"]) for r in sorted(self.rows, key=lambda r: r["epoch"])
                 if isinstance(r.get("time"), (int, float))]
        total = sum(t for t, nxt in zip(times, times[1:] + [-1.0]) if nxt < t)
        if times and "train+eval" not in out:
            out["train+eval"] = total
        return out

    def pick(self, env: str, metric: str, scoring: Scoring) -> Evaluation | None:
        """The evaluation the metric reads: the last one ("final") or the highest-scoring one ("best")."""
        evals = self.curves.get(env) or []
        if not evals:
            return None
        if metric == "final":
            return evals[-1]
        return max(evals, key=lambda e: (scoring.score(e.success, e.ret, env), -e.epoch))


def _read_run(d: Path) -> Run:
    try:
        config = json.loads((d / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PvrError(f"cannot read {d / 'config.json'} ({e}); fix it or move that directory away") from None
    if "embedding_name" not in config:
        raise PvrError(f"{d / 'config.json'} is not a pvr run config (no embedding_name); move that directory away")
    run = Run(d, config, read_jsonl(d / "stats.jsonl"), (d / "done").exists())
    default_episodes = int(config.get("num_episodes_test", 0) or 0)
    for row in sorted(run.rows, key=lambda r: r["epoch"]):
        for env, r in (row.get("test") or {}).items():
            success, ret = float(r.get("success", math.nan)), float(r.get("return", math.nan))
            if math.isnan(success) and math.isnan(ret):
                continue
            run.curves.setdefault(env, []).append(
                Evaluation(int(row["epoch"]), success, ret, int(r.get("episodes", default_episodes))))
    if (d / TIMINGS).exists():
        try:
            t = json.loads((d / TIMINGS).read_text())
            run.timings = {str(k): float(v) for k, v in t.items() if isinstance(v, (int, float))}
        except (OSError, json.JSONDecodeError, AttributeError):
            pass  # an unreadable timings file only loses the wall-time column
    run.stages = stage_times(run)
    return run


def _dataset_stage_times(config: dict, fingerprint: str | None) -> dict[str, float]:
    """collect and embed seconds recorded in the run's dataset stores, summed over its envs (a stage is
    absent unless every env's store records it)."""
    import pvr.data
    from pvr.evaluation.timing import dataset_totals

    envs = [e for e in str(config.get("env", "")).split(",") if e]
    data_path = config.get("data_path")
    if not envs or not data_path:
        return {}
    per_env = []
    for env in envs:
        path = next((p for p in (Path(data_path) / f"{env.replace('/', '_')}.zarr", Path(data_path) / f"{env}.zarr")
                     if p.exists()), None)
        if path is None:
            return {}
        try:
            ds = pvr.data.open(path, mode="r")
        except Exception:  # noqa: BLE001 — an unreadable store only loses its stage times
            return {}
        try:
            per_env.append(dataset_totals(ds, config["embedding_name"], fingerprint))
        finally:
            ds.close()
    return {k: sum(t[k] for t in per_env) for k in ("collect", "embed") if all(k in t for t in per_env)}


def stage_times(run: Run) -> dict[str, float]:
    """Seconds of each stage behind a run: ``collect`` and ``embed`` of its datasets (recorded in the
    stores, shared by every run on them; else the benchmark runner's ``timings.json``), ``train`` and
    ``evaluate`` of the run itself (``stage_times.jsonl``). A stage with no record is absent."""
    from pvr.evaluation.timing import RUN_STAGES, run_totals

    fingerprint = None
    try:
        fingerprint = json.loads((run.path / "run.json").read_text())["facts"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    out = {k: run.timings[k] for k in ("collect", "embed") if k in run.timings}
    if not run.config.get("train_embedding"):  # fine-tuning embeds nothing
        out.update(_dataset_stage_times(run.config, fingerprint))
    else:
        out.pop("embed", None)
    out.update({k: v for k, v in run_totals(run.path).items() if k in RUN_STAGES})
    return out


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Every run directory at or below the given paths (none is an error: nothing to report)."""
    dirs: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise PvrError(f"{p} does not exist; give run directories or folders that contain them")
        dirs += [c.parent for c in sorted(p.rglob("config.json")) if (c.parent / "stats.jsonl").exists()]
    if not dirs:
        raise PvrError(f"no run directories (with config.json and stats.jsonl) under {', '.join(map(str, paths))}")
    return [_read_run(d) for d in dict.fromkeys(dirs)]


def find_manifest(paths: list[str | Path], explicit: str | Path | None = None) -> Manifest:
    """The manifest given, else the one ``benchmark.json`` among the paths, else an empty one."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise PvrError(f"manifest {explicit} does not exist; give a {MANIFEST} file or drop --manifest")
        return Manifest.read(explicit)
    found = [Path(p) / MANIFEST for p in paths if (Path(p) / MANIFEST).is_file()]
    if len(found) > 1:
        raise PvrError(f"several manifests ({', '.join(map(str, found))}); choose one with --manifest")
    return Manifest.read(found[0]) if found else Manifest()


@dataclass
class Slot:
    """One expected (task, encoder, seed) and the run that fills it, if any."""

    task: str
    encoder: str
    seed: int
    run: Run | None = None
    duplicates: list[Run] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.run is None:
            return "missing: no run directory"
        if self.run.finished:
            return "done"
        epochs = self.run.config.get("epochs")
        last = self.run.last_epoch
        at = "not started" if last is None else f"epoch {last}" + (f" of {epochs}" if epochs is not None else "")
        return f"missing: unfinished ({at})"

    @property
    def missing(self) -> bool:
        return self.run is None or not self.run.finished


def grid(runs: list[Run], manifest: Manifest) -> tuple[list[Slot], list[Run]]:
    """The expected slots (each with its run) and the runs outside the grid."""
    tasks = manifest.tasks or sorted({r.task for r in runs})
    encoders = manifest.encoders or sorted({r.encoder for r in runs})
    seeds = manifest.seeds or sorted({r.seed for r in runs})
    slots = {(t, e, s): Slot(t, e, s) for t in tasks for e in encoders for s in seeds}
    outside = []
    # finished runs first, then the most advanced: a duplicate never displaces a better run
    for run in sorted(runs, key=lambda r: (not r.finished, -(r.last_epoch or -1), str(r.path))):
        slot = slots.get(run.key)
        if slot is None:
            outside.append(run)
        elif slot.run is None:
            slot.run = run
        else:
            slot.duplicates.append(run)
    return list(slots.values()), outside
