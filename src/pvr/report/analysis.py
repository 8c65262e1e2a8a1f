"""From filled slots to the numbers a report states: per task, per suite, across suites."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pvr.report import stats
from pvr.report.runs import Manifest, Scoring, Slot


@dataclass
class Result:
    """One finished run's reading on one evaluated env."""

    env: str
    encoder: str
    seed: int
    path: Path
    epoch: int
    score: float
    success: float
    ret: float
    episodes: int


@dataclass
class Analysis:
    protocol: str
    metric: str
    reps: int
    encoders: list[str]
    envs: list[str]
    slots: list[Slot]
    results: list[Result]
    scoring: Scoring
    per_task: list[dict] = field(default_factory=list)
    per_suite: list[dict] = field(default_factory=list)
    overall: dict = field(default_factory=dict)

    @property
    def missing(self) -> list[Slot]:
        return [s for s in self.slots if s.missing]

    def basis(self, results: list[Result] | None = None) -> str:
        """What a table or figure was computed from, in one line."""
        rs = self.results if results is None else results
        seeds = sorted({r.seed for r in rs})
        eps = sorted({r.episodes for r in rs})
        runs = len({r.path for r in rs})
        ep = "-" if not eps else (str(eps[0]) if len(eps) == 1 else f"{eps[0]}-{eps[-1]}")
        return (f"protocol {self.protocol}; metric {self.metric}; {runs} finished run{'s' * (runs != 1)} "
                f"of {len(self.slots)} expected; seeds {','.join(map(str, seeds)) or '-'}; "
                f"{ep} episodes per evaluation")


def _envs_of(slot: Slot) -> list[str]:
    if slot.run is not None and slot.run.curves:
        return list(slot.run.curves)
    return [e for e in slot.task.split(",") if e]


def _matrix(by: dict[tuple[str, str], list[Result]], envs: list[str], enc: str) -> np.ndarray:
    """(runs, tasks) scores: per task the first k seeds, k = the fewest any task has (rliable needs a matrix)."""
    cols = [sorted(by[(env, enc)], key=lambda r: r.seed) for env in envs]
    k = min(len(c) for c in cols)
    return np.array([[c[i].score for c in cols] for i in range(k)], dtype=float)


def analyse(slots: list[Slot], manifest: Manifest, *, metric: str | None = None, reps: int = 2000,
            seed: int = 0) -> Analysis:
    scoring = Scoring(manifest)
    metric = metric or manifest.metric or "final"
    encoders = manifest.encoders or sorted({s.encoder for s in slots})
    envs = list(dict.fromkeys(e for s in slots for e in _envs_of(s)))
    results = []
    for s in slots:
        if s.missing:
            continue
        for env in s.run.curves:
            ev = s.run.pick(env, metric, scoring)
            if ev is not None:
                results.append(Result(env, s.encoder, s.seed, s.run.path, ev.epoch,
                                      scoring.score(ev.success, ev.ret, env), ev.success, ev.ret, ev.episodes))
    a = Analysis(manifest.protocol or "ad hoc (no benchmark.json)", metric, reps, encoders, envs, slots, results,
                 scoring)
    by: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        by.setdefault((r.env, r.encoder), []).append(r)

    for env in envs:
        for enc in encoders:
            expected = [s for s in slots if s.encoder == enc and env in _envs_of(s)]
            rs = sorted(by.get((env, enc), []), key=lambda r: r.seed)
            mean, lo, hi = stats.bootstrap_mean(np.array([r.score for r in rs]), reps=reps, seed=seed)
            k = sum(round(r.success * r.episodes) for r in rs if not math.isnan(r.success))
            n = sum(r.episodes for r in rs if not math.isnan(r.success))
            a.per_task.append({
                "env": env, "suite": scoring.suite(env), "encoder": enc, "label": scoring.label(env),
                "seeds": [r.seed for r in rs], "expected": len(expected),
                "missing_seeds": sorted(s.seed for s in expected if s.missing),
                "score": mean, "score_ci": (lo, hi),
                "success": k / n if n else math.nan, "successes": k, "episodes": n, "success_ci": stats.wilson(k, n),
                "return": float(np.mean([r.ret for r in rs])) if rs else math.nan,
                "epochs": sorted({r.epoch for r in rs}), "runs": [str(r.path) for r in rs]})

    complete = lambda e: all(by.get((e, enc)) for enc in encoders)  # noqa: E731
    for suite in sorted({scoring.suite(e) for e in envs}):
        suite_envs = [e for e in envs if scoring.suite(e) == suite and complete(e)]
        if not suite_envs:
            continue
        mats = {enc: _matrix(by, suite_envs, enc) for enc in encoders}
        agg = stats.aggregates(mats, reps=reps, seed=seed)
        for enc in encoders:
            a.per_suite.append({"suite": suite, "encoder": enc, "envs": suite_envs, "runs": int(mats[enc].size),
                                "seeds_per_task": int(mats[enc].shape[0]), **agg[enc]})

    common = [e for e in envs if complete(e)]
    if common:
        mats = {enc: _matrix(by, common, enc) for enc in encoders}
        means = np.array([[np.mean([r.score for r in by[(e, enc)]]) for enc in encoders] for e in common])
        agg = stats.aggregates(mats, reps=reps, seed=seed)
        poi = []
        if len(encoders) > 1:
            for i, x in enumerate(encoders):
                for y in encoders[i + 1:]:
                    p, lo, hi = stats.probability_of_improvement(mats[x], mats[y], reps=reps, seed=seed)
                    poi.append({"x": x, "y": y, "p": p, "ci": (lo, hi),
                                "runs": (int(mats[x].shape[0]), int(mats[y].shape[0]))})
        a.overall = {"envs": common, "aggregates": agg, "ranks": stats.ranks(means).tolist(),
                     "mean_rank": dict(zip(encoders, stats.mean_rank(means).tolist())), "poi": poi,
                     "runs": {enc: int(m.size) for enc, m in mats.items()},
                     "seeds_per_task": {enc: int(m.shape[0]) for enc, m in mats.items()}}
    return a
