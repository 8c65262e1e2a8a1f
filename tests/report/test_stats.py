"""The report's statistics against values computed independently here."""
import math

import numpy as np
import pytest
import scipy.stats

from pvr.report import stats


def wilson_closed(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (7, 20), (1, 50), (33, 50)])
def test_wilson_matches_closed_formula_and_statsmodels(k, n):
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = stats.wilson(k, n)
    elo, ehi = wilson_closed(k, n)
    slo, shi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert lo == pytest.approx(max(0.0, elo), abs=1e-12) and hi == pytest.approx(min(1.0, ehi), abs=1e-12)
    assert lo == pytest.approx(slo, abs=1e-9) and hi == pytest.approx(shi, abs=1e-9)
    assert lo <= k / n <= hi


def test_wilson_known_value_and_empty():
    # 0 of 10: lower bound 0, upper z²/(n+z²)
    z2 = 1.959963984540054 ** 2
    assert stats.wilson(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert all(math.isnan(v) for v in stats.wilson(0, 0))


def test_bootstrap_mean_matches_percentile_bootstrap():
    values = np.array([0.2, 0.55, 0.6, 0.9, 0.35, 0.8, 0.7])
    mean, lo, hi = stats.bootstrap_mean(values, reps=20000, seed=3)
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi
    # numpy percentile bootstrap of the mean
    rng = np.random.default_rng(3)
    boot = values[rng.integers(0, len(values), size=(20000, len(values)))].mean(axis=1)
    nlo, nhi = np.percentile(boot, [2.5, 97.5])
    # scipy's percentile bootstrap
    res = scipy.stats.bootstrap((values,), np.mean, n_resamples=20000, method="percentile",
                                random_state=np.random.default_rng(3))
    for ref_lo, ref_hi in ((nlo, nhi), (res.confidence_interval.low, res.confidence_interval.high)):
        assert lo == pytest.approx(ref_lo, abs=0.015) and hi == pytest.approx(ref_hi, abs=0.015)


def test_bootstrap_mean_is_reproducible_and_degenerate_cases():
    v = np.array([0.1, 0.4, 0.5])
    assert stats.bootstrap_mean(v, reps=500, seed=1) == stats.bootstrap_mean(v, reps=500, seed=1)
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    stats.bootstrap_mean(v, reps=50, seed=1)
    assert np.random.rand() == expected  # the caller's global NumPy stream is left as it was
    assert stats.bootstrap_mean(np.array([0.7]))[1:] == (0.7, 0.7)
    assert all(math.isnan(x) for x in stats.bootstrap_mean(np.array([])))


def test_iqm_of_known_array():
    # 8 values: the middle half is 3, 4, 5, 6 -> IQM 4.5 (the mean is 4.5 too, so use a skewed array)
    x = np.array([[0.0, 1.0, 3.0, 4.0], [5.0, 6.0, 50.0, 100.0]])
    out = stats.aggregates({"a": x}, reps=300, seed=0)["a"]
    assert out["iqm"] == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert out["mean"] == pytest.approx(x.mean())
    lo, hi = out["mean_ci"]
    assert lo <= out["mean"] <= hi and lo < hi


def test_probability_of_improvement_known_matrices():
    rng = np.random.default_rng(0)
    x = rng.random((4, 3))
    p, lo, hi = stats.probability_of_improvement(x, x.copy(), reps=200, seed=0)
    assert p == pytest.approx(0.5)
    dominant = x + 2.0  # every run of every task beats every run of x
    p, lo, hi = stats.probability_of_improvement(dominant, x, reps=200, seed=0)
    assert (p, lo, hi) == pytest.approx((1.0, 1.0, 1.0))
    p, _, _ = stats.probability_of_improvement(x, dominant, reps=200, seed=0)
    assert p == pytest.approx(0.0)
    # one task half dominated: P = mean over tasks of Mann-Whitney U / (n_x n_y)
    y = x.copy()
    y[:, 0] += 2.0
    p, lo, hi = stats.probability_of_improvement(x, y, reps=200, seed=0)
    assert p == pytest.approx((0.0 + 0.5 + 0.5) / 3)
    assert lo <= p <= hi


def test_mean_rank_with_ties():
    means = np.array([[0.9, 0.5, 0.5],    # ranks 1, 2.5, 2.5
                      [0.1, 0.8, 0.3],    # ranks 3, 1, 2
                      [0.4, 0.4, 0.4]])   # ranks 2, 2, 2
    assert stats.ranks(means).tolist() == [[1, 2.5, 2.5], [3, 1, 2], [2, 2, 2]]
    assert stats.mean_rank(means) == pytest.approx([(1 + 3 + 2) / 3, (2.5 + 1 + 2) / 3, (2.5 + 2 + 2) / 3])
