"""The report's PNGs; each says in its title what it was computed from."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from pvr.report.analysis import Analysis


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, title: str, basis: str) -> Path:
    """Title on top and the basis at the bottom, both wrapped to the figure's width so nothing is cut."""
    w, h = fig.get_size_inches()
    title_lines = textwrap.wrap(title, int(w * 12))
    basis_lines = textwrap.wrap(basis, int(w * 17))
    fig.suptitle("\n".join(title_lines), fontsize=10)
    fig.text(0.5, 0.01, "\n".join(basis_lines), ha="center", va="bottom", fontsize=7, color="0.3")
    top = 1 - (len(title_lines) * 13 + 6) / 72 / h
    bottom = (len(basis_lines) * 9 + 6) / 72 / h
    fig.tight_layout(rect=(0, bottom, 1, top))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _colours(encoders: list[str]) -> dict[str, tuple]:
    cmap = _plt().get_cmap("tab10")
    return {e: cmap(i % 10) for i, e in enumerate(encoders)}


def curves(a: Analysis, path: Path) -> tuple[Path, str]:
    """Score vs epoch per env, one line per encoder: mean over runs, band = min..max (unfinished runs included)."""
    plt = _plt()
    runs = [s.run for s in a.slots if s.run is not None]
    envs = [e for e in a.envs if any(e in r.curves for r in runs)]
    n = max(1, len(envs))
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows + 0.6), squeeze=False)
    colour = _colours(a.encoders)
    for ax in axes.flat[len(envs):]:
        ax.axis("off")
    for ax, env in zip(axes.flat, envs):
        for enc in a.encoders:
            cs = [r.curves[env] for r in runs if r.encoder == enc and env in r.curves]
            if not cs:
                continue
            # at each epoch, the runs that reached it: an unfinished run does not cut the others short
            at: dict[int, list[float]] = {}
            for c in cs:
                for e in c:
                    at.setdefault(e.epoch, []).append(a.scoring.score(e.success, e.ret, env))
            epochs = sorted(at)
            ax.plot(epochs, [np.mean(at[e]) for e in epochs], marker="o", ms=3, color=colour[enc],
                    label=f"{enc} ({len(cs)} run{'s' * (len(cs) > 1)})")
            if len(cs) > 1:
                ax.fill_between(epochs, [min(at[e]) for e in epochs], [max(at[e]) for e in epochs], alpha=0.2,
                                color=colour[enc])
        ax.set_title(env)
        ax.set_xlabel("epoch")
        ax.set_ylabel(a.scoring.label(env))
        if a.scoring.max_return(env) is None:
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    unfinished = sum(not r.finished for r in runs)
    title = f"Learning curves ({a.protocol}): mean over the runs at each epoch, band min–max"
    basis = (f"{len(runs)} runs with evaluations ({unfinished} unfinished, included here); " + a.basis())
    caption = f"Learning curves: normalised score vs epoch, mean over runs, shaded band min–max. {basis}."
    return _save(fig, path, title, basis), caption


def suites(a: Analysis, path: Path) -> tuple[Path, str] | None:
    """Per suite: each task's mean score and the suite mean, bars per encoder with 95 % bootstrap intervals."""
    if not a.per_suite:
        return None
    plt = _plt()
    names = list(dict.fromkeys(s["suite"] for s in a.per_suite))
    width_units = [len(next(s for s in a.per_suite if s["suite"] == n)["envs"]) + 1 for n in names]
    fig, axes = plt.subplots(1, len(names), figsize=(max(4.5, 0.5 * len(a.encoders) * sum(width_units) + 2), 4.6),
                             squeeze=False, gridspec_kw={"width_ratios": width_units})
    colour = _colours(a.encoders)
    task_rows = {(t["env"], t["encoder"]): t for t in a.per_task}
    w = 0.8 / len(a.encoders)
    for ax, name in zip(axes[0], names):
        rows = [s for s in a.per_suite if s["suite"] == name]
        envs = rows[0]["envs"]
        for j, enc in enumerate(a.encoders):
            s = next(r for r in rows if r["encoder"] == enc)
            ts = [task_rows[(e, enc)] for e in envs]
            means = [t["score"] for t in ts] + [s["mean"]]
            lo = [t["score_ci"][0] for t in ts] + [s["mean_ci"][0]]
            hi = [t["score_ci"][1] for t in ts] + [s["mean_ci"][1]]
            x = np.arange(len(means)) + (j - (len(a.encoders) - 1) / 2) * w
            err = np.array([np.subtract(means, lo), np.subtract(hi, means)])
            ax.bar(x, means, w, yerr=np.clip(err, 0, None), capsize=3, color=colour[enc], label=enc)
        ax.set_xticks(range(len(envs) + 1), [e for e in envs] + [f"{name} mean"], rotation=20, ha="right",
                      fontsize=8)
        ax.set_title(f"{name} (≥{min(r['seeds_per_task'] for r in rows)} seeds per task)", fontsize=9)
        ax.set_ylabel("normalised score")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    title = f"Per-suite scores ({a.protocol}, metric {a.metric}): mean, 95 % bootstrap CI over seeds"
    basis = a.basis() + f"; {a.reps} bootstrap resamples"
    caption = ("Per-suite bars: each task's mean normalised score over seeds and the suite mean over its tasks, "
               f"with 95 % stratified-bootstrap intervals. {basis}.")
    return _save(fig, path, title, basis), caption


def aggregate(a: Analysis, path: Path) -> tuple[Path, str] | None:
    """IQM and mean over all common tasks, and the probability of improvement of each pair."""
    if not a.overall:
        return None
    plt = _plt()
    o = a.overall
    panels = 3 if o["poi"] else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 0.45 * max(len(a.encoders), len(o["poi"])) + 2.4),
                             squeeze=False)
    colour = _colours(a.encoders)
    for ax, key, title in zip(axes[0], ("iqm", "mean"), ("IQM", "Mean")):
        for i, enc in enumerate(a.encoders):
            g = o["aggregates"][enc]
            ax.plot(list(g[f"{key}_ci"]), [i, i], lw=6, alpha=0.6, color=colour[enc], solid_capstyle="butt")
            ax.plot([g[key]], [i], "k|", ms=14)
        ax.set_yticks(range(len(a.encoders)), a.encoders)
        ax.set_ylim(-0.6, len(a.encoders) - 0.4)
        ax.set_title(f"{title} of normalised score", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    if o["poi"]:
        ax = axes[0][2]
        for i, p in enumerate(o["poi"]):
            ax.plot(list(p["ci"]), [i, i], lw=6, alpha=0.6, color=colour[p["x"]], solid_capstyle="butt")
            ax.plot([p["p"]], [i], "k|", ms=14)
        ax.set_yticks(range(len(o["poi"])), [f"P({p['x']} > {p['y']})" for p in o["poi"]], fontsize=8)
        ax.set_ylim(-0.6, len(o["poi"]) - 0.4)
        ax.axvline(0.5, color="0.5", ls="--", lw=1)
        ax.set_xlim(-0.03, 1.03)
        ax.set_title("Probability of improvement", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    runs = ", ".join(f"{e} {o['seeds_per_task'][e]}" for e in a.encoders)
    title = f"Across suites ({a.protocol}, {len(o['envs'])} tasks): 95 % stratified-bootstrap CIs"
    basis = (f"{len(o['envs'])} tasks every encoder has results on; seeds per task used: {runs}; "
             f"{a.reps} bootstrap resamples; " + a.basis())
    caption = ("Across suites: interquartile mean and mean of the normalised scores of all runs on every task, "
               f"and the probability that a run of X beats a run of Y on a task, averaged over tasks. {basis}.")
    return _save(fig, path, title, basis), caption


def ranks(a: Analysis, path: Path) -> tuple[Path, str] | None:
    """How often each encoder takes each rank over the common tasks (rank of its mean over seeds)."""
    if not a.overall or len(a.encoders) < 2:
        return None
    plt = _plt()
    o = a.overall
    r = np.array(o["ranks"])  # (tasks, encoders)
    k = len(a.encoders)
    fig, ax = plt.subplots(figsize=(7, 0.45 * k + 2.2))
    cmap = plt.get_cmap("viridis")
    for i, enc in enumerate(a.encoders):
        left = 0.0
        for rank in range(1, k + 1):
            # a tie at rank 1.5 counts half at 1 and half at 2
            share = float(np.sum(np.clip(1 - np.abs(r[:, i] - rank), 0, 1))) / len(r)
            ax.barh(i, share, left=left, color=cmap((rank - 1) / max(1, k - 1)),
                    label=f"rank {rank}" if i == 0 else None)
            left += share
    ax.set_yticks(range(k), [f"{e} (mean rank {o['mean_rank'][e]:.2f})" for e in a.encoders], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of tasks")
    ax.legend(fontsize=7, ncol=min(k, 5), loc="upper center", bbox_to_anchor=(0.5, -0.25))
    title = f"Rank distribution ({a.protocol}, {len(o['envs'])} tasks; 1 = best, ties share)"
    basis = f"ranks of the mean over seeds on {len(o['envs'])} tasks; " + a.basis()
    caption = f"Rank plot: the share of tasks on which each encoder ranks 1st, 2nd, ... {basis}."
    return _save(fig, path, title, basis), caption
