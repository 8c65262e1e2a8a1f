"""The statistics a report states, each with its 95 % interval.

Intervals over seeds (per-task means, suite and cross-suite aggregates,
probability of improvement) are rliable's stratified percentile bootstrap
(Agarwal et al. 2021), resampling runs within each task; success rates get a
Wilson score interval over the pooled evaluation episodes. Every bootstrap is
seeded, so a report is reproducible from its run directories.
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import scipy.stats

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson(successes: float, episodes: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a success rate; exact at 0 and n successes, unlike the normal one."""
    if episodes <= 0:
        return math.nan, math.nan
    p = successes / episodes
    z2n = z * z / episodes
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / episodes + z2n / (4 * episodes))
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # at 0 or n successes the bound is exactly 0 or 1; rounding must not move it off the observed rate
    return (0.0 if successes <= 0 else lo), (1.0 if successes >= episodes else hi)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """rliable 1.2 draws its resampling indices from NumPy's global generator, whatever ``random_state``
    says: seed that for the call and put the caller's state back after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arch: RandomState is deprecated
            yield
    finally:
        np.random.set_state(state)


def _interval(score_dict: dict, func: Callable, reps: int, seed: int) -> tuple[dict, dict]:
    from rliable import library as rly

    with _seeded(seed):
        return rly.get_interval_estimates(score_dict, func, reps=reps, random_state=np.random.RandomState(seed))


def bootstrap_mean(values: np.ndarray, *, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds and its 95 % percentile-bootstrap interval (a single value has no interval)."""
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size == 1 or np.all(v == v[0]):
        return mean, mean, mean
    point, ci = _interval({"x": v[:, None]}, lambda x: np.array([np.mean(x)]), reps, seed)
    return mean, float(ci["x"][0, 0]), float(ci["x"][1, 0])


def aggregates(scores: dict[str, np.ndarray], *, reps: int = 2000, seed: int = 0) -> dict[str, dict]:
    """IQM and mean of each ``(runs, tasks)`` normalised-score matrix, with stratified-bootstrap intervals."""
    from rliable import metrics

    func = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])  # noqa: E731
    out: dict[str, dict] = {}
    resample = {k: v for k, v in scores.items() if v.shape[0] > 1}
    point, ci = _interval(resample, func, reps, seed) if resample else ({}, {})
    for k, v in scores.items():
        p = point.get(k, func(v))
        lo, hi = (ci[k][0], ci[k][1]) if k in ci else (p, p)
        out[k] = {"iqm": float(p[0]), "iqm_ci": (float(lo[0]), float(hi[0])),
                  "mean": float(p[1]), "mean_ci": (float(lo[1]), float(hi[1]))}
    return out


def probability_of_improvement(x: np.ndarray, y: np.ndarray, *, reps: int = 2000,
                               seed: int = 0) -> tuple[float, float, float]:
    """P(X > Y) averaged over tasks (Mann-Whitney per task) for ``(runs, tasks)`` matrices, with its interval."""
    from rliable import metrics

    if x.shape[0] < 2 or y.shape[0] < 2:
        p = float(metrics.probability_of_improvement(x, y))
        return p, p, p
    point, ci = _interval({"xy": (x, y)}, metrics.probability_of_improvement, reps, seed)
    return float(point["xy"]), float(np.ravel(ci["xy"])[0]), float(np.ravel(ci["xy"])[1])


def ranks(means: np.ndarray) -> np.ndarray:
    """Rank of each method (columns) on each task (rows): 1 = best, ties share the average rank."""
    return np.vstack([scipy.stats.rankdata(-row, method="average") for row in np.atleast_2d(means)])


def mean_rank(means: np.ndarray) -> np.ndarray:
    """Mean over tasks of :func:`ranks`, one value per method."""
    return ranks(means).mean(axis=0)
