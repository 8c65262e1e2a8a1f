"""Tables, figures and statistics that compare encoders, from run directories alone.

``report(paths, out)`` reads every run directory under ``paths`` (``config.json``,
``stats.jsonl``, ``done``: see :mod:`pvr.bc.trainer`) and an optional
``benchmark.json`` manifest (see :mod:`pvr.report.runs`), and writes into ``out``:
``report.md``, a self-contained ``report.html``, the PNGs they show
(``success.png`` learning curves, ``suites.png``, ``aggregate.png``, ``ranks.png``),
``summary.json`` (one row per encoder and env) and ``report.json`` (every number).
It works on a half-finished benchmark: missing runs are marked, not fatal.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pvr.errors import PvrError
from pvr.report import document, figures
from pvr.report.analysis import Analysis, analyse
from pvr.report.runs import METRICS, Manifest, Run, find_manifest, find_runs, grid

__all__ = ["METRICS", "Analysis", "Manifest", "Run", "analyse", "find_manifest", "find_runs", "grid", "report"]


def _summary(a: Analysis) -> list[dict]:
    """One row per (encoder, env) with finished runs; the keys earlier pvr versions wrote are kept."""
    runs = {s.run.path: s.run for s in a.slots if s.run is not None}
    out = []
    for t in a.per_task:
        rs = [r for r in a.results if r.env == t["env"] and r.encoder == t["encoder"]]
        if not rs:
            continue
        succ = np.array([r.success for r in rs], dtype=float)
        ret = np.array([r.ret for r in rs], dtype=float)
        best = np.array([max(e.success for e in runs[r.path].curves[r.env]) for r in rs], dtype=float)
        out.append({"encoder": t["encoder"], "env": t["env"], "suite": t["suite"], "seeds": len(rs),
                    "expected_seeds": t["expected"], "missing_seeds": t["missing_seeds"],
                    "final_epoch": min(r.epoch for r in rs), "metric": a.metric,
                    "score": t["score"], "score_ci": list(t["score_ci"]), "score_label": t["label"],
                    "success": float(succ.mean()), "success_std": float(succ.std()),
                    "success_ci": list(t["success_ci"]), "episodes": t["episodes"],
                    "return": float(ret.mean()), "return_std": float(ret.std()),
                    "best_success": float(best.mean()), "finished": True, "runs": [str(r.path) for r in rs]})
    return out


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    return x


def report(paths: list[str | Path], out_dir: str | Path | None = None, *, metric: str | None = None,
           manifest: str | Path | None = None, reps: int = 2000, seed: int = 0) -> tuple[str, Path, list[dict]]:
    """Write the report for the runs under ``paths``; return (console table, learning-curve PNG, summary rows)."""
    if metric is not None and metric not in METRICS:
        raise PvrError(f"--metric must be one of {', '.join(METRICS)}, not {metric!r}")
    if reps < 1:
        raise PvrError("--reps must be at least 1")
    runs = find_runs(paths)
    if not any(r.curves for r in runs):
        raise PvrError("the runs have no evaluation results yet; report again after the first evaluation")
    m = find_manifest(paths, manifest)
    slots, outside = grid(runs, m)
    a = analyse(slots, m, metric=metric, reps=reps, seed=seed)
    out = Path(out_dir) if out_dir else Path(paths[0])
    out.mkdir(parents=True, exist_ok=True)
    png, caption = figures.curves(a, out / "success.png")
    figs = [(png, caption)] + [f for f in (figures.suites(a, out / "suites.png"),
                                           figures.aggregate(a, out / "aggregate.png"),
                                           figures.ranks(a, out / "ranks.png")) if f is not None]
    bs = document.blocks(a, figs, outside)
    (out / "report.md").write_text(document.markdown(bs, out) + "\n")
    (out / "report.html").write_text(document.html_page(bs))
    summary = _summary(a)
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    full = {"protocol": a.protocol, "metric": a.metric, "basis": a.basis(), "reps": reps, "seed": seed,
            "manifest": None if m.source is None else str(m.source), "per_task": a.per_task,
            "per_suite": a.per_suite, "overall": a.overall,
            "runs": [{"task": s.task, "encoder": s.encoder, "seed": s.seed, "status": s.status,
                      "path": None if s.run is None else str(s.run.path),
                      "wall_time": {} if s.run is None else s.run.wall_time} for s in slots]}
    (out / "report.json").write_text(json.dumps(_jsonable(full), indent=2) + "\n")
    return document.console_table(a), png, summary
