"""analysis.stats against independent computations (scipy, formulas written out here), and the
findings' resolved / not-resolved decision pinned at the t quantile, not at 2 or 1 standard errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.findings import compare
from analysis.stats import (
    bootstrap_interval,
    format_difference,
    format_slope,
    slope_interval,
    welch_interval,
    welch_interval_from_samples,
)
from analysis.table_format import Cell

A = np.array([61.2, 63.9, 60.4])
B = np.array([57.1, 58.8, 55.0, 59.6])


def welch_by_hand(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """(diff, se, df, half width) with the Welch–Satterthwaite df written out."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    se = math.sqrt(va + vb)
    return b.mean() - a.mean(), se, df, scipy_stats.t.ppf(1 - (1 - level) / 2, df) * se


def cell(mean: float, std: float, n: int = 3) -> Cell:
    """n per-seed values with exactly this mean and sample std (n = 3: mean + std * (−1, 0, 1))."""
    offsets = np.linspace(-1.0, 1.0, n)
    offsets *= std / offsets.std(ddof=1)
    return Cell(tuple(float(v) for v in mean + offsets), tuple(range(n)))


# ------------------------------------------------------------------------------------ Welch
@pytest.mark.parametrize("level", [0.95, 0.9])
def test_welch_matches_scipy_and_the_interval_by_hand(level: float) -> None:
    d = welch_interval_from_samples(A, B, level=level)
    reference = scipy_stats.ttest_ind(B, A, equal_var=False)
    assert d.t == pytest.approx(reference.statistic, rel=1e-12)
    assert d.p_value == pytest.approx(reference.pvalue, rel=1e-10)
    diff, se, df, half = welch_by_hand(A, B, level)
    assert (d.diff, d.standard_error, d.df) == pytest.approx((diff, se, df), rel=1e-12)
    assert (d.low, d.high) == pytest.approx((diff - half, diff + half), rel=1e-12)
    assert (d.low, d.high) == pytest.approx(tuple(reference.confidence_interval(level)), rel=1e-9)
    assert (d.n_a, d.n_b, d.level) == (3, 4, level)


def test_summary_and_sample_forms_agree() -> None:
    from_samples = welch_interval_from_samples(A, B)
    from_summary = welch_interval(A.mean(), A.std(ddof=1), len(A), B.mean(), B.std(ddof=1), len(B))
    for name in ("diff", "standard_error", "df", "t", "p_value", "low", "high"):
        assert getattr(from_summary, name) == pytest.approx(getattr(from_samples, name), rel=1e-12)
    # a diverged run (NaN) is not a seed's value
    assert welch_interval_from_samples([*A, float("nan")], B).n_a == 3


def test_single_runs_are_unresolvable_and_say_so() -> None:
    d = welch_interval(60.0, float("nan"), 1, 50.0, 1.0, 3)
    assert not d.resolved and math.isnan(d.low) and math.isnan(d.p_value)
    assert "single run" in d.note
    assert format_difference(d) == (
        "\u221210.0 mm (single run on one side, so the seed-to-seed spread is unknown): not resolved")
    assert "no runs" in welch_interval_from_samples([], B).note


def test_zero_spread_on_both_sides_gives_a_point_interval() -> None:
    d = welch_interval_from_samples([60.0, 60.0, 60.0], [58.0, 58.0])
    assert (d.low, d.high, d.standard_error, d.df, d.p_value) == (-2.0, -2.0, 0.0, 3.0, 0.0)
    assert d.resolved and d.t == -math.inf and "check that the seed changes the run" in d.note
    same = welch_interval_from_samples([60.0, 60.0], [60.0, 60.0])
    assert not same.resolved and (same.t, same.p_value) == (0.0, 1.0)
    # zero spread on one side only: Welch's df is the other side's n − 1
    one_sided = welch_interval_from_samples([60.0, 60.0, 60.0], [57.0, 58.0, 59.0, 60.0])
    assert one_sided.df == pytest.approx(3.0)


# ------------------------------------------------------------------------------------ the decision
@pytest.mark.parametrize("std_a, std_b, n_a, n_b", [(1.0, 1.0, 3, 3), (1.0, 3.0, 3, 4), (2.5, 0.4, 2, 3)])
def test_the_sentence_flips_at_the_t_quantile(std_a: float, std_b: float, n_a: int, n_b: int) -> None:
    before = cell(60.0, std_a, n_a)
    va, vb = std_a ** 2 / n_a, std_b ** 2 / n_b
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    boundary = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    for factor, resolved in ((0.99, False), (1.01, True)):
        after = cell(60.0 - factor * boundary, std_b, n_b)
        sentence = compare("pa_mpjpe", before, after, "X", "Y")
        assert ("resolved at 95 %" in sentence) is resolved, sentence
        assert ("not resolved" in sentence) is not resolved, sentence
        assert welch_interval(60.0, std_a, n_a, 60.0 - factor * boundary, std_b, n_b).resolved is resolved


def test_two_and_a_half_standard_errors_at_three_seeds_are_not_resolved() -> None:
    """With 3 seeds a side and equal spreads, df = 4 and the quantile is 2.78: a "twice the
    standard error" (or once) rule would call 2.5 standard errors resolved."""
    before, se = cell(60.0, 2.0), math.sqrt(2 * 2.0 ** 2 / 3)
    after = cell(60.0 - 2.5 * se, 2.0)
    d = welch_interval_from_samples(before.values, after.values)
    assert d.df == pytest.approx(4.0) and abs(d.diff) == pytest.approx(2.5 * d.standard_error)
    sentence = compare("pa_mpjpe", before, after, "X", "Y")
    assert sentence.endswith(": not resolved.") and "resolved at 95 %" not in sentence
    # the interval printed is the t-interval: half width t_{0.975, 4} x se
    half = scipy_stats.t.ppf(0.975, 4) * se
    assert f"95 % CI [\u2212{2.5 * se + half:.1f}, +{half - 2.5 * se:.1f}]" in sentence


def test_format_difference_reads_as_a_phrase() -> None:
    d = welch_interval(60.0, 2.0, 3, 57.5, 1.5, 3)
    se = math.sqrt(4 / 3 + 2.25 / 3)
    df = (4 / 3 + 2.25 / 3) ** 2 / ((4 / 3) ** 2 / 2 + (2.25 / 3) ** 2 / 2)
    half = scipy_stats.t.ppf(0.975, df) * se
    p = 2 * scipy_stats.t.sf(2.5 / se, df)
    assert format_difference(d) == (
        f"\u22122.5 mm, 95 % CI [\u2212{2.5 + half:.1f}, +{half - 2.5:.1f}], Welch t({df:.1f}) = "
        f"\u2212{2.5 / se:.1f}, p = {p:.2g}: not resolved")
    assert format_difference(welch_interval(60.0, 1.0, 3, 50.0, 1.0, 3), unit="px").endswith(": resolved at 95 %")


# ------------------------------------------------------------------------------------ bootstrap
def test_bootstrap_is_deterministic_and_separates_separated_groups() -> None:
    a = np.array([10.0, 10.5, 11.0, 9.5, 10.2])
    b = a - 5.0 + np.array([0.3, -0.2, 0.1, -0.4, 0.2])
    first = bootstrap_interval(a, b, seed=3)
    assert first == bootstrap_interval(a, b, seed=3)
    assert first != bootstrap_interval(a, b, seed=4)
    assert first.diff == pytest.approx(b.mean() - a.mean())
    assert first.low < -5.0 < first.high and first.resolved and first.n_resamples == 10000
    same = bootstrap_interval(a, a.copy())
    assert same.low < 0.0 < same.high and not same.resolved
    lonely = bootstrap_interval([1.0], b)
    assert math.isnan(lonely.low) and not lonely.resolved and "fewer than two" in lonely.note


# ------------------------------------------------------------------------------------ slope
def falling_points(noise: float, slope: float = -2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three seeds at each of four amounts (0x..3x): repeated x, one point per run."""
    x = np.repeat([0.0, 1.0, 2.0, 3.0], 3)
    return x, 60.0 + slope * x + np.random.default_rng(seed).normal(0.0, noise, len(x))


def test_slope_matches_linregress_and_the_interval_by_hand() -> None:
    x, y = falling_points(noise=1.5)
    s, reference = slope_interval(x, y), scipy_stats.linregress(x, y)
    assert (s.slope, s.intercept, s.standard_error) == pytest.approx(
        (reference.slope, reference.intercept, reference.stderr), rel=1e-10)
    assert s.p_value == pytest.approx(reference.pvalue, rel=1e-8)
    half = scipy_stats.t.ppf(0.975, len(x) - 2) * reference.stderr
    assert (s.low, s.high, s.df, s.n) == pytest.approx((reference.slope - half, reference.slope + half, 10, 12))


def test_a_noisy_fall_is_a_resolved_negative_slope_and_a_flat_line_is_not() -> None:
    falling = slope_interval(*falling_points(noise=1.5))
    assert falling.resolved_negative
    assert format_slope(falling).endswith(": a resolved negative slope")
    flat = slope_interval(*falling_points(noise=1.5, slope=0.0))
    assert flat.low < 0.0 < flat.high and not flat.resolved_negative
    assert format_slope(flat).endswith(": not a resolved negative slope")
    assert not slope_interval(*falling_points(noise=1.5, slope=2.0)).resolved_negative


def test_slope_with_too_few_points_or_one_amount_has_no_interval() -> None:
    two = slope_interval([0.0, 1.0], [60.0, 58.0])
    assert two.slope == pytest.approx(-2.0) and math.isnan(two.low) and not two.resolved_negative
    one_amount = slope_interval([1.0, 1.0, 1.0], [60.0, 58.0, 59.0])
    assert math.isnan(one_amount.slope) and "distinct" in one_amount.note
    exact = slope_interval([0.0, 1.0, 2.0], [60.0, 58.0, 56.0])
    assert (exact.low, exact.high) == pytest.approx((-2.0, -2.0)) and exact.resolved_negative
