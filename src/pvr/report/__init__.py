"""Tables and plots that compare encoders, built from run directories alone.

A run directory is any folder with ``config.json`` and ``stats.jsonl`` (see
:mod:`pvr.bc.trainer`). Runs of the same (encoder, environment) with different
seeds are aggregated: mean and standard deviation over seeds.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pvr.errors import PvrError
from pvr.utils.io import read_jsonl


@dataclass
class Run:
    path: Path
    config: dict
    rows: list[dict]
    finished: bool
    curves: dict[str, dict[str, list]] = field(default_factory=dict)  # env → {"epoch","success","return"}

    @property
    def encoder(self) -> str:
        return self.config["embedding_name"]

    @property
    def seed(self) -> int:
        return self.config.get("seed", 0)


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Every run directory at or below the given paths."""
    dirs: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise PvrError(f"{p} does not exist; give run directories or folders that contain them")
        dirs += [c.parent for c in sorted(p.rglob("config.json")) if (c.parent / "stats.jsonl").exists()]
    if not dirs:
        raise PvrError(f"no run directories (with config.json and stats.jsonl) under {', '.join(map(str, paths))}")
    runs = []
    for d in dict.fromkeys(dirs):
        run = Run(d, json.loads((d / "config.json").read_text()), read_jsonl(d / "stats.jsonl"), (d / "done").exists())
        for row in run.rows:
            for env, r in (row.get("test") or {}).items():
                c = run.curves.setdefault(env, {"epoch": [], "success": [], "return": []})
                c["epoch"].append(row["epoch"]); c["success"].append(r["success"]); c["return"].append(r["return"])
        runs.append(run)
    return runs


def summarise(runs: list[Run]) -> list[dict]:
    """One row per (encoder, env): final success/return (mean ± std over seeds)."""
    groups: dict[tuple[str, str], list[tuple[Run, dict]]] = {}
    for run in runs:
        for env, c in run.curves.items():
            groups.setdefault((run.encoder, env), []).append((run, c))
    out = []
    for (enc, env), items in sorted(groups.items()):
        succ = np.array([c["success"][-1] for _, c in items], dtype=float)
        ret = np.array([c["return"][-1] for _, c in items], dtype=float)
        best = np.array([np.nanmax(c["success"]) for _, c in items], dtype=float)
        out.append({"encoder": enc, "env": env, "seeds": len(items),
                    "final_epoch": min(c["epoch"][-1] for _, c in items),
                    "success": float(succ.mean()), "success_std": float(succ.std()),
                    "return": float(ret.mean()), "return_std": float(ret.std()),
                    "best_success": float(best.mean()),
                    "finished": all(r.finished for r, _ in items),
                    "runs": [str(r.path) for r, _ in items]})
    return out


def _pm(mean: float, std: float, n: int, fmt: str) -> str:
    if math.isnan(mean):
        return "-"
    return format(mean, fmt) + (f" ± {format(std, fmt)}" if n > 1 else "")


def table(summary: list[dict]) -> str:
    head = ["encoder", "env", "seeds", "epoch", "success", "return", "best success"]
    rows = [[s["encoder"], s["env"], str(s["seeds"]), str(s["final_epoch"]) + ("" if s["finished"] else "*"),
             _pm(s["success"], s["success_std"], s["seeds"], ".2f"), _pm(s["return"], s["return_std"], s["seeds"], ".3f"),
             format(s["best_success"], ".2f")] for s in summary]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if any(not s["finished"] for s in summary):
        out.append("* run not finished: last evaluated epoch shown")
    return "\n".join(out)


def plot(runs: list[Run], out_png: str | Path, metric: str = "success") -> Path:
    """Metric vs epoch, one line per encoder (mean over seeds, band = min..max), one panel per env."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({env for r in runs for env in r.curves})
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        by_enc: dict[str, list[dict]] = {}
        for r in runs:
            if env in r.curves:
                by_enc.setdefault(r.encoder, []).append(r.curves[env])
        for enc, curves in sorted(by_enc.items()):
            epochs = sorted(set.intersection(*(set(c["epoch"]) for c in curves)))
            vals = np.array([[dict(zip(c["epoch"], c[metric]))[e] for e in epochs] for c in curves], dtype=float)
            ax.plot(epochs, vals.mean(0), marker="o", ms=3, label=f"{enc} ({len(curves)} seed{'s' * (len(curves) > 1)})")
            if len(curves) > 1:
                ax.fill_between(epochs, vals.min(0), vals.max(0), alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if metric == "success":
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def report(paths: list[str | Path], out_dir: str | Path | None = None) -> tuple[str, Path, list[dict]]:
    """Table text, plot path and summary rows for the runs under ``paths``."""
    runs = find_runs(paths)
    summary = summarise(runs)
    if not summary:
        raise PvrError("the runs have no evaluation results yet")
    out_dir = Path(out_dir) if out_dir else Path(paths[0])
    png = plot(runs, out_dir / "success.png")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return table(summary), png, summary
