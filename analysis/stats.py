"""Small-sample statistics for the findings page: is a difference over seeds resolved, and does
the error fall with the amount of GTA-Human.

The study has few seeds per setting (often 2 or 3), so the multiplier on a standard error matters:
with Welch's degrees of freedom around 2–4, the 97.5 % t quantile is 2.8–4.3, not the normal 1.96
(or the "twice the standard error" rule this replaces, which calls differences resolved that a
t-interval does not). Hence:

- `welch_interval` / `welch_interval_from_samples`: the difference of two means (b − a) with its
  Welch t-interval (unequal variances, Welch–Satterthwaite degrees of freedom). This is the
  primary rule: a difference is *resolved* when its interval excludes 0.
- `bootstrap_interval`: a percentile bootstrap of the same difference, resampling seeds within
  each group; a cross-check only, coarse with 3 seeds (see its docstring).
- `slope_interval`: least-squares slope of error against amount with its t-interval (df = n − 2)
  over every per-seed point.
- `format_difference` / `format_slope`: the phrases the findings page prints.

Pure numpy/scipy; no run directories are read here.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

MINUS = "\u2212"  # typographic minus, so signs line up with "+" in the sentences


@dataclass(frozen=True)
class Difference:
    """``diff = b − a`` with its Welch t-interval at ``level``; NaN where it cannot be computed
    (``note`` then says why)."""

    diff: float
    standard_error: float
    df: float  # Welch–Satterthwaite degrees of freedom
    t: float
    p_value: float  # two-sided
    low: float
    high: float
    level: float
    n_a: int
    n_b: int
    note: str = ""

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 (False whenever it could not be computed)."""
        return bool(self.low > 0 or self.high < 0)


def welch_interval(a_mean: float, a_std: float, a_n: int, b_mean: float, b_std: float, b_n: int,
                   level: float = 0.95) -> Difference:
    """Welch's difference b − a from two summaries (mean, sample std with ddof=1, number of seeds).

    With fewer than two values on a side that side's spread is unknown, so nothing is resolved:
    the interval, t and p are NaN and ``note`` says so. When both sides have zero spread (every
    seed gave the same number) the Welch–Satterthwaite df is 0/0; the standard error is then 0,
    the interval collapses to the point ``diff`` (resolved exactly when diff ≠ 0), df is reported
    as n_a + n_b − 2 (the largest value Welch's df can take; it does not change a zero-width
    interval), and ``note`` asks to check that the seed changes the run at all.
    """
    diff = float(b_mean) - float(a_mean)
    nan = float("nan")
    if a_n < 2 or b_n < 2:
        note = ("no runs on one side" if min(a_n, b_n) < 1
                else "single run on one side, so the seed-to-seed spread is unknown")
        return Difference(diff, nan, nan, nan, nan, nan, nan, level, a_n, b_n, note)
    if not all(math.isfinite(v) for v in (a_mean, a_std, b_mean, b_std)):
        return Difference(diff, nan, nan, nan, nan, nan, nan, level, a_n, b_n, "a mean or spread is not finite")
    var_a, var_b = float(a_std) ** 2 / a_n, float(b_std) ** 2 / b_n  # squared standard errors of the means
    standard_error = math.sqrt(var_a + var_b)
    if standard_error == 0.0:
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return Difference(diff, 0.0, float(a_n + b_n - 2), t, 1.0 if diff == 0 else 0.0, diff, diff, level,
                          a_n, b_n, "no spread over seeds on either side: check that the seed changes the run")
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (a_n - 1) + var_b ** 2 / (b_n - 1))
    t = diff / standard_error
    p_value = float(2 * scipy_stats.t.sf(abs(t), df))
    half_width = float(scipy_stats.t.ppf(0.5 + level / 2, df)) * standard_error
    return Difference(diff, standard_error, df, t, p_value, diff - half_width, diff + half_width, level, a_n, b_n)


def finite_values(values: Sequence[float]) -> np.ndarray:
    """The finite entries as float64 (a run that diverged records NaN; it is not a seed's value)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def welch_interval_from_samples(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Difference:
    """`welch_interval` from the per-seed values of each side (non-finite values are dropped)."""
    a, b = finite_values(a), finite_values(b)

    def summary(x: np.ndarray) -> tuple[float, float, int]:
        mean = float(x.mean()) if len(x) else float("nan")
        return mean, float(x.std(ddof=1)) if len(x) >= 2 else float("nan"), len(x)

    return welch_interval(*summary(a), *summary(b), level=level)


@dataclass(frozen=True)
class BootstrapDifference:
    """Observed ``diff = mean(b) − mean(a)`` and its percentile-bootstrap interval at ``level``."""

    diff: float
    low: float
    high: float
    level: float
    n_resamples: int
    note: str = ""

    @property
    def resolved(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` (seeds) with its t-interval (n - 1 degrees of
    freedom); NaN bounds for fewer than two finite values."""
    finite = finite_values(values)
    mean = float(finite.mean()) if len(finite) else float("nan")
    if len(finite) < 2:
        return mean, float("nan"), float("nan")
    half = float(scipy_stats.t.ppf(0.5 + level / 2, len(finite) - 1)) * float(finite.std(ddof=1)) / math.sqrt(len(finite))
    return mean, mean - half, mean + half


def bootstrap_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95, n_resamples: int = 10000,
                       seed: int = 0) -> BootstrapDifference:
    """Percentile bootstrap of mean(b) − mean(a), resampling seeds with replacement within each group.

    A cross-check of `welch_interval`, not a replacement: with 3 seeds a group has only 10 distinct
    resamples, so the bootstrap distribution has at most 100 distinct values, and its spread is
    that of the plug-in variance (too small by (n − 1)/n), so the interval is coarse and tends to
    be narrower than it should. Welch is the rule the findings page uses. Deterministic for a
    given ``seed``; fewer than two values on a side give a NaN interval (``note`` says why).
    """
    a, b = finite_values(a), finite_values(b)
    diff = float(b.mean() - a.mean()) if len(a) and len(b) else float("nan")
    if len(a) < 2 or len(b) < 2:
        return BootstrapDifference(diff, float("nan"), float("nan"), level, 0,
                                   "fewer than two values on one side: nothing to resample")
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, len(a), size=(n_resamples, len(a)))].mean(axis=1)
    means_b = b[rng.integers(0, len(b), size=(n_resamples, len(b)))].mean(axis=1)
    low, high = np.quantile(means_b - means_a, [0.5 - level / 2, 0.5 + level / 2])
    return BootstrapDifference(diff, float(low), float(high), level, n_resamples)


@dataclass(frozen=True)
class Slope:
    """Least-squares slope of y on x with its t-interval at ``level`` (df = n − 2)."""

    slope: float
    intercept: float
    standard_error: float
    df: int
    p_value: float  # two-sided, slope ≠ 0
    low: float
    high: float
    level: float
    n: int
    note: str = ""

    @property
    def resolved_negative(self) -> bool:
        """The whole interval lies below 0: y falls as x grows."""
        return bool(self.high < 0)


def slope_interval(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> Slope:
    """Slope of y on x (ordinary least squares) with its t-interval.

    Pass every per-seed point (x repeats, one point per seed and amount), not per-amount means:
    means hide the seed-to-seed scatter the interval needs and count a 3-seed amount like a
    1-seed one. Pairs with a non-finite value are dropped. Fewer than 3 points (no residual
    degree of freedom) or a single x value leave the interval NaN with a ``note``; a perfect fit
    gives a zero-width interval at the slope.
    """
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n, nan = len(x), float("nan")
    if n < 2 or np.ptp(x) == 0:
        return Slope(nan, nan, nan, max(n - 2, 0), nan, nan, nan, level, n, "fewer than two distinct amounts")
    x_centred = x - x.mean()
    sxx = float(x_centred @ x_centred)
    slope = float(x_centred @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    if n < 3:
        return Slope(slope, intercept, nan, 0, nan, nan, nan, level, n, "two points: no residual to give an interval")
    residuals = y - (intercept + slope * x)
    df = n - 2
    standard_error = math.sqrt(float(residuals @ residuals) / df / sxx)
    if standard_error == 0.0:
        return Slope(slope, intercept, 0.0, df, 0.0 if slope else 1.0, slope, slope, level, n, "a perfect fit")
    p_value = float(2 * scipy_stats.t.sf(abs(slope / standard_error), df))
    half_width = float(scipy_stats.t.ppf(0.5 + level / 2, df)) * standard_error
    return Slope(slope, intercept, standard_error, df, p_value, slope - half_width, slope + half_width, level, n)


# ------------------------------------------------------------------------------------ phrases
def signed(value: float, digits: int = 1) -> str:
    """``+1.2`` / ``−1.2`` with a typographic minus; ``0.0`` unsigned; ``nan`` as is."""
    if not math.isfinite(value):
        return str(value)
    text = f"{abs(value):.{digits}f}"
    if float(text) == 0:
        return text
    return ("+" if value > 0 else MINUS) + text


def format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def format_level(level: float) -> str:
    return f"{100 * level:g} %"


def format_difference(d: Difference, unit: str = "mm", digits: int = 1) -> str:
    """E.g. ``−2.5 mm, 95 % CI [−6.1, +1.1], Welch t(3.2) = −1.9, p = 0.15: not resolved``;
    a resolved difference ends ``: resolved at 95 %`` (the only phrase that says "resolved at")."""
    head = f"{signed(d.diff, digits)}{' ' + unit if unit else ''}"
    if not math.isfinite(d.low):
        return f"{head} ({d.note or 'no interval'}): not resolved"
    interval = f"{format_level(d.level)} CI [{signed(d.low, digits)}, {signed(d.high, digits)}]"
    if d.standard_error == 0:
        test = f"{interval} ({d.note})"
    else:
        test = f"{interval}, Welch t({d.df:.1f}) = {signed(d.t)}, {format_p(d.p_value)}"
    return f"{head}, {test}: " + (f"resolved at {format_level(d.level)}" if d.resolved else "not resolved")


def format_slope(s: Slope, unit: str = "mm per 1x") -> str:
    """E.g. ``−1.56 mm per 1x, 95 % CI [−2.90, −0.22] (t, 10 df, p = 0.027): a resolved negative
    slope``; otherwise ``: not a resolved negative slope``."""
    head = f"{signed(s.slope, 2)} {unit}"
    if not math.isfinite(s.low):
        return f"{head} ({s.note or 'no interval'}): not a resolved negative slope"
    detail = s.note if s.standard_error == 0 else f"t, {s.df} df, {format_p(s.p_value)}"
    interval = f"{format_level(s.level)} CI [{signed(s.low, 2)}, {signed(s.high, 2)}] ({detail})"
    return f"{head}, {interval}: " + ("a resolved negative slope" if s.resolved_negative
                                      else "not a resolved negative slope")
