"""Graders for CE4.2 — data drift detection.

Every statistic is compared with an independent reference: scipy's
``ks_2samp`` and ``chi2_contingency``, and the textbook PSI/KL formulas written
out below. Reports may be any object (or dict) with the documented fields.

No verdict rests on a random draw: the samples that decide "drifted or not" are
deterministic (evenly spread quantiles of a distribution, exact category
counts), and each expected value is computed here, from the same data, before
the learner's answer is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbook.checks import assert_close, field, learner_error, number
from workbook.sealed import in_learner_process
from workbook.services.base import free_port
from workbook.services.webhook import WebhookReceiver

EPSILON = 1e-4


# -- deterministic samples --------------------------------------------------------------------


def spread(n: int, loc: float = 0.0, scale: float = 1.0, *, seed: int = 0) -> np.ndarray:
    """``n`` evenly spread quantiles of a normal distribution, in a shuffled (fixed) order."""
    values = stats.norm.ppf((np.arange(n) + 0.5) / n) * scale + loc
    return np.random.default_rng(seed).permutation(values)


def spread_exp(n: int, loc: float = 0.0, *, seed: int = 0) -> np.ndarray:
    """``n`` evenly spread quantiles of an exponential distribution (a skewed column)."""
    values = stats.expon.ppf((np.arange(n) + 0.5) / n) + loc
    return np.random.default_rng(seed).permutation(values)


def with_counts(counts: Mapping, *, seed: int = 0) -> np.ndarray:
    """A categorical column holding exactly ``counts[c]`` rows of each category ``c``."""
    values = np.concatenate([np.full(k, c, dtype=object) for c, k in counts.items()])
    return np.random.default_rng(seed).permutation(values)


REF_COLOURS = {"a": 1200, "b": 900, "c": 600, "d": 300}  # 40/30/20/10 %
CALM_COLOURS = {"d": 50, "c": 100, "b": 150, "a": 200}  # the same shares, listed in another order


def reference_frame() -> pd.DataFrame:
    """3,000 rows: x normal, y exponential, colour 40/30/20/10 % — all exactly spread."""
    return pd.DataFrame({
        "x": spread(3000, seed=1),
        "y": spread_exp(3000, seed=2),
        "colour": with_counts(REF_COLOURS, seed=3),
    })


def calm_window(*, seed: int = 10) -> pd.DataFrame:
    """500 rows shaped exactly like ``reference_frame``: every p-value is near 1."""
    return pd.DataFrame({
        "x": spread(500, seed=seed),
        "y": spread_exp(500, seed=seed + 1),
        "colour": with_counts(CALM_COLOURS, seed=seed + 2),
    })


def shifted_window(*, seed: int = 20) -> pd.DataFrame:
    """x and y moved by one standard deviation (p-values below 1e-40), colour calm."""
    window = calm_window(seed=seed)
    window["x"] += 1.0
    window["y"] += 1.0
    return window


def random_frame(n: int, seed: int, *, loc: float = 0.0, scale: float = 1.0) -> pd.DataFrame:
    """Random numeric columns, for checks that compare statistics with scipy on the same data."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(loc, scale, n), "y": rng.exponential(1.0, n)})


# -- independent references -------------------------------------------------------------------


def aligned_table(ref: pd.Series, new: pd.Series) -> np.ndarray:
    """2 x k counts of both samples over the union of their categories."""
    cats = sorted(set(ref.dropna()) | set(new.dropna()), key=str)
    return np.array([[int((ref == c).sum()) for c in cats], [int((new == c).sum()) for c in cats]])


def psi_kl(p: np.ndarray, q: np.ndarray) -> tuple[float, float, float]:
    """PSI, KL(new||ref) and KL(ref||new) of reference shares p and new shares q."""
    p = np.where(p == 0, EPSILON, p)
    q = np.where(q == 0, EPSILON, q)
    return (
        float(np.sum((q - p) * np.log(q / p))),
        float(np.sum(q * np.log(q / p))),
        float(np.sum(p * np.log(p / q))),
    )


def quantile_bins_psi_kl(ref: np.ndarray, new: np.ndarray, bins: int) -> tuple[float, float, float]:
    """Textbook PSI and both KLs on ``bins`` reference-quantile bins with ±inf outer edges."""
    edges = np.quantile(ref, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    return psi_kl(np.histogram(ref, edges)[0] / ref.size, np.histogram(new, edges)[0] / new.size)


def category_psi_kl(ref: pd.Series, new: pd.Series) -> tuple[float, float, float]:
    table = aligned_table(ref, new)
    shares = table / table.sum(axis=1, keepdims=True)
    return psi_kl(shares[0], shares[1])


def squared_grid_samples() -> tuple[np.ndarray, np.ndarray]:
    """A skewed reference (u² on an even grid of 1,000) and a window that avoids every bin edge.

    Whatever quantile convention cuts the reference into 5, 10 or 20 bins, the window's
    values lie in the middle of those bins, so the expected PSI and KL are exact up to
    about 1.5 % (one reference value on either side of an edge).
    """
    ref = ((np.arange(1000) + 0.5) / 1000) ** 2
    per_twentieth = [10, 20, 30, 40, 50, 60, 70, 60, 50, 40, 30, 40, 60, 80, 90, 80, 70, 60, 40, 20]
    new = np.concatenate([
        k / 20 + 0.005 + 0.04 * (np.arange(c) + 0.5) / c for k, c in enumerate(per_twentieth)
    ]) ** 2
    rng = np.random.default_rng(5)
    return rng.permutation(ref), rng.permutation(new)


# -- access helpers ---------------------------------------------------------------------------


def feature(report, name: str):
    """The per-feature result ``report.features[name]`` (attribute or key access)."""
    __tracebackhide__ = True
    features = field(report, "features", what="the drift report")
    try:
        return features[name]
    except (KeyError, TypeError):
        raise AssertionError(
            f"report.features should have an entry for column {name!r}; got {list(features)}"
        ) from None


def value(report, name: str, key: str) -> float:
    __tracebackhide__ = True
    return number(field(feature(report, name), key, what=f"report.features[{name!r}]"),
                  what=f"report.features[{name!r}].{key}")


def drifted(report, name: str) -> bool:
    __tracebackhide__ = True
    return bool(field(feature(report, name), "drifted", what=f"report.features[{name!r}]"))


def method(report, name: str) -> str:
    __tracebackhide__ = True
    return str(field(feature(report, name), "method", what=f"report.features[{name!r}]"))


def verdict(report) -> bool:
    __tracebackhide__ = True
    return bool(field(report, "drifted", what="the drift report"))


def chi2_matches(got_stat: float, got_p: float, table: np.ndarray) -> bool:
    """Either Yates-corrected or uncorrected chi-square is accepted (they differ only at dof 1)."""
    for correction in (True, False):
        result = stats.chi2_contingency(table, correction=correction)
        if math.isclose(got_stat, result.statistic, rel_tol=1e-6, abs_tol=1e-9) and math.isclose(
            got_p, result.pvalue, rel_tol=1e-4, abs_tol=1e-12
        ):
            return True
    return False


def assert_chi2(report, name: str, ref: pd.Series, new: pd.Series, context: str) -> None:
    __tracebackhide__ = True
    table = aligned_table(ref, new)
    got_stat, got_p = value(report, name, "statistic"), value(report, name, "p_value")
    expected = stats.chi2_contingency(table)
    assert chi2_matches(got_stat, got_p, table), (
        f"chi-square of {name!r} ({context}) should be {expected.statistic:.6g} "
        f"(p={expected.pvalue:.3g}) on the counts lined up by category {table.tolist()}; "
        f"got {got_stat:.6g} (p={got_p:.3g})"
    )


def assert_ks(report, name: str, ref, new, context: str) -> None:
    __tracebackhide__ = True
    expected = stats.ks_2samp(np.asarray(ref, dtype=float), np.asarray(new, dtype=float))
    assert_close(value(report, name, "statistic"), expected.statistic,
                 what=f"KS statistic of {name!r} ({context})")
    assert_close(value(report, name, "p_value"), expected.pvalue, rel=1e-4, abs_=1e-12,
                 what=f"KS p-value of {name!r} ({context})")


@pytest.fixture
def drift(load_module):
    return load_module("drift")


@pytest.fixture(scope="module")
def _receiver():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def receiver(_receiver):
    """A real HTTP receiver on a loopback port (shared by the module, emptied for each check)."""
    _receiver.calls.clear()
    _receiver.status = 200
    yield _receiver
    _receiver.status = 200


# -- statistics against independent references ------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.covers("ks-test")
@pytest.mark.parametrize("shift", [0.0, 0.3, -0.3, "wider"])
def test_ks_statistic_and_p_value_match_scipy(drift, shift):
    """Numeric features: the two-sided KS statistic and p-value equal scipy's ks_2samp."""
    ref = random_frame(2000, seed=1)
    new = (random_frame(300, seed=2, scale=1.6) if shift == "wider"
           else random_frame(300, seed=2, loc=shift))
    report = drift.DriftDetector(ref).detect_drift(new, threshold=0.05)
    for column in ("x", "y"):
        assert_ks(report, column, ref[column], new[column], f"shift {shift}")


@pytest.mark.points(2)
@pytest.mark.covers("ks-large")
def test_ks_matches_scipy_on_large_samples(drift):
    """Large windows (scipy's asymptotic p-value accepted) still match ks_2samp, ties included."""
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 30_000), "k": rng.integers(0, 40, 30_000).astype(float)})
    new = pd.DataFrame({"x": rng.normal(-0.03, 1, 12_000), "k": rng.integers(0, 41, 12_000).astype(float)})
    report = drift.DriftDetector(ref).detect_drift(new)
    for column in ("x", "k"):
        expected = stats.ks_2samp(ref[column], new[column])
        assert_close(value(report, column, "statistic"), expected.statistic,
                     what=f"KS statistic of {column!r} on 30,000 vs 12,000 rows")
        # Above 10,000 rows the asymptotic Kolmogorov p-value (kstwobign) is accepted too:
        # it is within 3% of ks_2samp's at this size.
        assert_close(value(report, column, "p_value"), expected.pvalue, rel=3e-2, abs_=1e-6,
                     what=f"KS p-value of {column!r} on 30,000 vs 12,000 rows")


@pytest.mark.points(2)
@pytest.mark.covers("chi2-test", "chi2-aligned")
def test_chi_square_matches_scipy_with_aligned_categories(drift):
    """Categorical features: chi-square of homogeneity on category-aligned counts, as scipy."""
    ref = pd.DataFrame({"colour": with_counts(REF_COLOURS)})
    # The same categories, in the reverse order of frequency: pairing counts by rank,
    # or by order of appearance, gives another table.
    new = pd.DataFrame({"colour": with_counts({"d": 160, "c": 120, "b": 80, "a": 40}, seed=4)})
    report = drift.DriftDetector(ref).detect_drift(new)
    assert_chi2(report, "colour", ref["colour"], new["colour"], "frequencies reversed")


@pytest.mark.points(2)
@pytest.mark.covers("chi2-new-category")
def test_new_category_is_counted_and_detected(drift):
    """A category the reference never saw is part of the test, and its arrival is drift."""
    ref = pd.DataFrame({"colour": with_counts(REF_COLOURS)})
    new = pd.DataFrame({"colour": with_counts({"a": 120, "b": 100, "c": 60, "d": 20, "e": 100}, seed=6)})
    report = drift.DriftDetector(ref).detect_drift(new)
    assert_chi2(report, "colour", ref["colour"], new["colour"], "with the new category 'e'")
    assert drifted(report, "colour"), "a new category taking 25% of the window should be drift"


@pytest.mark.points(1)
@pytest.mark.covers("ks-test", "ks-large")
def test_ks_p_value_is_exact_up_to_10000_rows(drift):
    """At exactly 10,000 reference rows the p-value is ks_2samp's exact one (asymptotic only above)."""
    ref = pd.DataFrame({"x": spread(10_000, seed=1)})
    new = pd.DataFrame({"x": spread(300, loc=0.12, seed=2)})
    report = drift.DriftDetector(ref).detect_drift(new)
    exact = stats.ks_2samp(ref["x"], new["x"], method="exact")
    asymptotic = stats.kstwobign.sf(exact.statistic * math.sqrt(10_000 * 300 / 10_300))
    assert abs(asymptotic - exact.pvalue) > 1e-3  # the case tells the two apart
    assert_close(value(report, "x", "p_value"), exact.pvalue, rel=1e-4, abs_=1e-12,
                 what="KS p-value with 10,000 reference rows (not above 10,000: the exact one)")


@pytest.mark.points(1)
@pytest.mark.covers("ks-test", "ks-large")
def test_ks_statistic_when_the_window_minimum_is_tied(drift):
    """Large samples: the KS statistic counts every tied value, the window's smallest one too."""
    ref = pd.DataFrame({"x": spread(30_000, seed=3)})
    # 40% of the window sits exactly at its minimum, 0.5: the largest gap is just below it.
    window = np.concatenate([np.full(4_800, 0.5), 0.5 + np.abs(spread(7_200, seed=4)) + 1e-3])
    new = pd.DataFrame({"x": window})
    report = drift.DriftDetector(ref).detect_drift(new)
    expected = stats.ks_2samp(ref["x"], new["x"])
    assert_close(value(report, "x", "statistic"), expected.statistic,
                 what="KS statistic of a 12,000-row window whose minimum holds 40% of its rows")


def uniform_window(m: int, position: int, side: str) -> np.ndarray:
    """``m`` evenly spread uniform quantiles, one moved so that the largest CDF gap is at ``position``.

    side "new": the value moves down next to the one before, so F_new - F_ref peaks there
    (about 1.4/m, against 0.5/m anywhere else); side "ref": it moves up next to the one after,
    so F_ref - F_new peaks just before it.
    """
    values = (np.arange(m) + 0.5) / m
    if side == "new":
        values[position] = values[position - 1] + 0.1 / m if position else 0.05 / m
    else:
        values[position] = values[position + 1] - 0.1 / m if position < m - 1 else 1 - 0.05 / m
    return values


def peaked_window(m: int, position: int, side: str) -> np.ndarray:
    """``m`` evenly spread uniform quantiles bent into a long gap of 100/m with a sharp peak at ``position``."""
    i = np.arange(m)
    bend = np.clip(100 - 0.9 * np.abs(i - position), 0, None) / m  # falls 0.9/m a value: still sorted
    return (i + 0.5) / m + (-bend if side == "new" else bend)


@pytest.mark.points(1)
@pytest.mark.covers("ks-large")
def test_ks_statistic_is_exact_wherever_the_largest_gap_lies(drift):
    """Large samples: the KS statistic is the supremum over every value, wherever the largest gap is."""
    n = 10_001  # reference rows: above 10,000, where a shortcut may replace scipy's exact method
    windows = {f"{side}_at_{p}": uniform_window(40, p, side) for side in ("new", "ref") for p in range(40)}
    for side in ("new", "ref"):
        for p in (41, 3_353, 5_007, 9_958):  # near either end too, where one CDF is close to 0 or 1
            windows[f"{side}_peak_at_{p}"] = peaked_window(10_000, p, side)
    reference = pd.DataFrame({name: np.random.default_rng(0).permutation((np.arange(n) + 0.5) / n)
                              for name in windows})
    window = pd.DataFrame({name: np.r_[v, np.full(10_000 - v.size, np.nan)] for name, v in windows.items()})
    report = drift.DriftDetector(reference).detect_drift(window)
    for name, values in windows.items():
        expected = stats.ks_2samp(reference[name], values).statistic
        assert_close(value(report, name, "statistic"), expected,
                     what=f"KS statistic of {name!r} ({values.size:,} window values against {n:,})")


@pytest.mark.points(1)
@pytest.mark.covers("chi2-new-category")
def test_a_category_seen_once_is_a_column(drift):
    """A new category with a single row in the window is a column of the table too."""
    ref = pd.DataFrame({"colour": with_counts(REF_COLOURS)})
    new = pd.DataFrame({"colour": with_counts({"a": 160, "b": 120, "c": 80, "d": 39, "e": 1}, seed=7)})
    report = drift.DriftDetector(ref).detect_drift(new)
    assert_chi2(report, "colour", ref["colour"], new["colour"], "with one row of the new category 'e'")


@pytest.mark.points(1)
@pytest.mark.covers("chi2-unseen-category", "chi2-test")
def test_unused_categories_are_not_columns(drift):
    """Categories a pandas `category` column declares but no row has are left out of the table."""
    kinds = ["a", "b", "c", "d", "unused"]
    ref = pd.DataFrame({"colour": pd.Categorical(with_counts(REF_COLOURS), categories=kinds)})
    new = pd.DataFrame({"colour": pd.Categorical(with_counts(CALM_COLOURS, seed=8), categories=kinds)})
    detector = drift.DriftDetector(ref)
    report = detector.detect_drift(new)
    assert_chi2(report, "colour", ref["colour"].astype(object), new["colour"].astype(object),
                "category columns with an unused category 'unused'")
    assert not drifted(report, "colour"), "a window with the reference's exact shares should not drift"


@pytest.mark.points(1)
@pytest.mark.covers("chi2-one-category")
def test_one_category_in_both_samples_cannot_drift(drift):
    """A column holding one category in both samples: statistic 0, p-value 1, not drifted."""
    ref = pd.DataFrame({"country": np.full(500, "NL", dtype=object), "x": spread(500, seed=9)})
    new = pd.DataFrame({"country": np.full(80, "NL", dtype=object), "x": spread(80, seed=10)})
    report = drift.DriftDetector(ref).detect_drift(new, threshold=0.99)
    assert_close(value(report, "country", "statistic"), 0.0,
                 what="chi-square statistic of a column with one category in both samples")
    assert_close(value(report, "country", "p_value"), 1.0,
                 what="p-value of a column with one category in both samples")
    assert not drifted(report, "country"), "one category in both samples can never be drift"


@pytest.mark.points(1)
@pytest.mark.covers("numeric-mismatch")
@pytest.mark.parametrize("values", [["n/a", "7", "x"], [{"v": 1}, {"v": 2}, {"v": 3}]],
                         ids=["text", "objects"])
def test_numeric_column_that_arrives_as_other_values_is_refused(drift, values):
    """A numeric reference column holding text or objects in the window is a ValueError naming it."""
    detector = drift.DriftDetector(pd.DataFrame({"amount": spread(200), "y": spread(200, seed=1)}))
    window = pd.DataFrame({"amount": pd.Series(values * 20, dtype=object), "y": spread(60, seed=2)})
    with learner_error(ValueError, what="detect_drift on a window whose numeric 'amount' holds text") as caught:
        detector.detect_drift(window)
    assert "amount" in str(caught.value), (
        f"the error for a numeric column holding other values should name it ('amount'); got {caught.value!r}"
    )


@pytest.mark.points(3)
@pytest.mark.covers("psi-reference-bins", "psi-formula", "psi-bins")
def test_psi_uses_reference_quantile_bins(drift):
    """Numeric PSI uses 10 bins cut at the reference's quantiles (not the window's, not equal widths)."""
    ref, new = squared_grid_samples()
    report = drift.DriftDetector(pd.DataFrame({"x": ref})).detect_drift(pd.DataFrame({"x": new}))
    expected = quantile_bins_psi_kl(ref, new, 10)[0]
    swapped = quantile_bins_psi_kl(new, ref, 10)[0]
    got = value(report, "x", "psi")
    assert math.isclose(got, expected, rel_tol=0.03), (
        f"PSI of 'x' should be {expected:.4f} (10 bins at the reference's quantiles, outer edges "
        f"±inf); got {got:.4f}"
        + (" — that is the PSI with bins cut at the new window's quantiles"
           if math.isclose(got, swapped, rel_tol=0.03) else "")
    )


@pytest.mark.points(2)
@pytest.mark.covers("psi-bins", "psi-reference-bins")
@pytest.mark.parametrize("bins", [5, 20])
def test_psi_bins_parameter_sets_the_number_of_bins(drift, bins):
    """psi_bins=5 or 20 cuts the reference into that many quantile bins."""
    ref, new = squared_grid_samples()
    detector = drift.DriftDetector(pd.DataFrame({"x": ref}), psi_bins=bins)
    report = detector.detect_drift(pd.DataFrame({"x": new}))
    expected = quantile_bins_psi_kl(ref, new, bins)[0]
    got = value(report, "x", "psi")
    assert math.isclose(got, expected, rel_tol=0.03), (
        f"PSI of 'x' with psi_bins={bins} should be {expected:.4f} ({bins} reference-quantile "
        f"bins); got {got:.4f} (10 bins would give {quantile_bins_psi_kl(ref, new, 10)[0]:.4f})"
    )


@pytest.mark.points(2)
@pytest.mark.covers("psi-outer-edges", "psi-epsilon")
def test_psi_outer_edges_and_epsilon_for_empty_bins(drift):
    """Values beyond the reference's range land in the outer bins; empty bins count as EPSILON."""
    ref, _ = squared_grid_samples()
    # Half the window below the reference's minimum, half above its maximum: with ±inf outer
    # edges they fill the first and last bins, and the 8 bins between are empty.
    new = np.concatenate([-1.0 - np.arange(100) / 100, 2.0 + np.arange(100) / 100])
    report = drift.DriftDetector(pd.DataFrame({"x": ref})).detect_drift(pd.DataFrame({"x": new}))
    psi, kl, _ = quantile_bins_psi_kl(ref, new, 10)
    got = value(report, "x", "psi")
    assert math.isfinite(got), (
        f"PSI with empty bins should be finite (give empty bins a share of EPSILON={EPSILON}); got {got}"
    )
    assert math.isclose(got, psi, rel_tol=2e-3), (
        f"PSI of a window half below and half above the reference's range should be {psi:.4f} "
        f"(outer edges -inf and +inf, 8 empty bins at {EPSILON}); got {got:.4f}"
    )
    got = value(report, "x", "kl_divergence")
    assert math.isclose(got, kl, rel_tol=2e-3), (
        f"KL(new||ref) of that window should be {kl:.4f} (empty bins at {EPSILON}); got {got:.4f}"
    )


QUANTILE_METHODS = ("linear", "lower", "higher", "nearest", "midpoint", "inverted_cdf",
                    "averaged_inverted_cdf", "closest_observation", "interpolated_inverted_cdf",
                    "hazen", "weibull", "median_unbiased", "normal_unbiased")


def tied_psi_values(ref: np.ndarray, new: np.ndarray, bins: int) -> set[float]:
    """Every PSI a reasonable binning gives when reference values repeat.

    Edges: the reference's inner quantiles by any of numpy's methods, repeats kept (a bin
    between two equal edges is empty in both samples and adds nothing) or not. A value equal
    to an edge goes in the bin above it ([a, b) bins) or below it ((a, b] bins).
    """
    found = set()
    for method in QUANTILE_METHODS:
        edges = np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1], method=method)
        for side in ("right", "left"):  # "right": the number of edges <= v, so [a, b) bins
            p = np.bincount(np.searchsorted(edges, ref, side=side), minlength=bins) / ref.size
            q = np.bincount(np.searchsorted(edges, new, side=side), minlength=bins) / new.size
            found.add(round(psi_kl(p, q)[0], 9))
    return found


@pytest.mark.points(1)
@pytest.mark.covers("psi-ties")
def test_psi_with_repeated_reference_values(drift):
    """Counts and a constant column repeat values, so quantile edges coincide: PSI is still given."""
    ref = pd.DataFrame({
        "visits": with_counts({0: 450, 1: 300, 2: 150, 3: 100}, seed=1).astype(np.int64),
        "plan_price": np.full(1000, 5.0),
    })
    new = pd.DataFrame({
        "visits": with_counts({0: 100, 1: 60, 2: 60, 3: 60, 4: 20}, seed=2).astype(np.int64),
        "plan_price": with_counts({4.0: 75, 5.0: 150, 6.0: 75}, seed=3).astype(float),
    })
    report = drift.DriftDetector(ref).detect_drift(new)
    for name, what in (("visits", "a count column (0-3, with 4 new)"), ("plan_price", "a constant column")):
        got = value(report, name, "psi")
        accepted = tied_psi_values(ref[name].to_numpy(float), new[name].to_numpy(float), 10)
        assert math.isfinite(got) and any(math.isclose(got, v, rel_tol=1e-6) for v in accepted), (
            f"PSI of {name!r}, {what}, should be one of {sorted(accepted)} (10 reference-quantile "
            f"bins, repeated edges allowed, a value on an edge in the bin on either side); got {got}"
        )


@pytest.mark.points(2)
@pytest.mark.covers("psi-categories", "psi-epsilon", "psi-formula")
def test_categorical_psi_has_one_bin_per_category(drift):
    """Categorical PSI: one bin per category, a new or vanished category counted with EPSILON."""
    ref = pd.DataFrame({"colour": with_counts(REF_COLOURS)})
    new = pd.DataFrame({"colour": with_counts({"a": 150, "b": 150, "c": 100, "e": 100}, seed=7)})
    report = drift.DriftDetector(ref).detect_drift(new)
    expected, _, _ = category_psi_kl(ref["colour"], new["colour"])
    got = value(report, "colour", "psi")
    assert math.isclose(got, expected, rel_tol=2e-3), (
        f"PSI of 'colour' should be {expected:.4f} (one bin per category of either sample, 'd' "
        f"missing from the window and 'e' new, each empty share set to {EPSILON}); got {got:.4f}"
    )


@pytest.mark.points(2)
@pytest.mark.covers("kl-direction")
def test_kl_divergence_is_new_given_reference(drift):
    """KL divergence is KL(new || ref) on the PSI bins, numeric and categorical (not KL(ref || new))."""
    ref_x, new_x = squared_grid_samples()
    ref = pd.DataFrame({"x": ref_x, "colour": with_counts({"a": 500, "b": 300, "c": 150, "d": 50})})
    new = pd.DataFrame({"x": new_x, "colour": with_counts({"a": 100, "b": 100, "c": 300, "d": 500})})
    report = drift.DriftDetector(ref).detect_drift(new)
    _, new_ref, ref_new = quantile_bins_psi_kl(ref_x, new_x, 10)
    got = value(report, "x", "kl_divergence")
    assert math.isclose(got, new_ref, rel_tol=0.03), (
        f"KL divergence of 'x' should be KL(new||ref) = {new_ref:.4f}; got {got:.4f}"
        + (" — that is KL(ref||new)" if math.isclose(got, ref_new, rel_tol=0.03) else "")
    )
    _, new_ref, ref_new = category_psi_kl(ref["colour"], new["colour"])
    got = value(report, "colour", "kl_divergence")
    assert math.isclose(got, new_ref, rel_tol=1e-3, abs_tol=1e-6), (
        f"KL divergence of 'colour' should be KL(new||ref) = {new_ref:.5f}; got {got:.5f}"
        + (" — that is KL(ref||new)" if math.isclose(got, ref_new, rel_tol=1e-3) else "")
    )


# -- which test a column gets -----------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("categorical-default", "method-name")
def test_columns_get_their_test_from_their_dtype(drift):
    """Float and int columns get KS ("ks"); text and category columns get chi-square ("chi2")."""
    ref = pd.DataFrame({
        "Amount": spread(1000, seed=1),
        "visits": with_counts({1: 500, 2: 300, 3: 200}, seed=2).astype(np.int64),
        "city": with_counts({"paris": 600, "rome": 400}, seed=3),
        "grade": pd.Categorical(with_counts({"A": 300, "B": 700}, seed=4)),
    })
    new = pd.DataFrame({
        "Amount": spread(200, loc=0.3, seed=5),
        "visits": with_counts({1: 60, 2: 60, 3: 80}, seed=6).astype(np.int64),
        "city": with_counts({"paris": 80, "rome": 120}, seed=7),
        "grade": pd.Categorical(with_counts({"A": 90, "B": 110}, seed=8)),
    })
    report = drift.DriftDetector(ref).detect_drift(new)
    for name, expected in (("Amount", "ks"), ("visits", "ks"), ("city", "chi2"), ("grade", "chi2")):
        got = method(report, name)
        assert got == expected, f"column {name!r} ({ref[name].dtype}) should be tested with {expected!r}; got {got!r}"
    assert_ks(report, "visits", ref["visits"], new["visits"], "an int column")
    assert_chi2(report, "city", ref["city"], new["city"], "a text column")
    assert_chi2(report, "grade", ref["grade"].astype(object), new["grade"].astype(object),
                "a pandas category column")


@pytest.mark.points(2)
@pytest.mark.covers("bool-categorical", "method-name")
def test_bool_columns_are_categorical(drift):
    """A bool column gets the chi-square test, although pandas calls bool numeric."""
    ref = pd.DataFrame({"churned": with_counts({True: 700, False: 300}, seed=1).astype(bool)})
    new = pd.DataFrame({"churned": with_counts({True: 100, False: 100}, seed=2).astype(bool)})
    report = drift.DriftDetector(ref).detect_drift(new)
    got = method(report, "churned")
    assert got == "chi2", f"a bool column should be tested with 'chi2'; got {got!r}"
    assert_chi2(report, "churned", ref["churned"], new["churned"], "a bool column")


@pytest.mark.points(2)
@pytest.mark.covers("categorical-features", "method-name", "psi-categories")
def test_categorical_features_parameter_overrides_the_dtype(drift):
    """A number column named in categorical_features gets chi-square and PSI on its values' counts."""
    ref = pd.DataFrame({
        "x": spread(1000, seed=1),
        "level": with_counts({1: 100, 2: 200, 3: 300, 4: 400}, seed=2).astype(np.int64),
    })
    new = pd.DataFrame({
        "x": spread(200, seed=3),
        "level": with_counts({1: 50, 2: 50, 3: 50, 4: 40, 5: 10}, seed=4).astype(np.int64),
    })
    report = drift.DriftDetector(ref, categorical_features=["level"]).detect_drift(new)
    got = method(report, "level")
    assert got == "chi2", (
        f"column 'level' named in categorical_features should be tested with 'chi2'; got {got!r}"
    )
    assert_chi2(report, "level", ref["level"], new["level"], "named in categorical_features")
    expected, _, _ = category_psi_kl(ref["level"], new["level"])
    numeric_bins = quantile_bins_psi_kl(ref["level"].to_numpy(float), new["level"].to_numpy(float), 10)[0]
    assert_close(value(report, "level", "psi"), expected, rel=1e-6, abs_=1e-9,
                 what=f"PSI of 'level', named in categorical_features (one bin per value, 5 the new one; "
                      f"reference-quantile bins would give {numeric_bins:.4f})")
    got = method(report, "x")
    assert got == "ks", f"column 'x', not named in categorical_features, should stay 'ks'; got {got!r}"


# -- verdicts ---------------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("ks-test", "threshold-strict")
def test_detects_mean_shift(drift):
    """A mean shifted by half a standard deviation is flagged; the unshifted column is not."""
    ref = reference_frame()
    new = calm_window()
    new["x"] += 0.5
    report = drift.DriftDetector(ref).detect_drift(new, threshold=0.05)
    assert_ks(report, "x", ref["x"], new["x"], "mean shifted by 0.5 sd")
    assert drifted(report, "x"), "column 'x' with its mean shifted by 0.5 sd (p ≈ 1e-15) should be drifted"
    assert not drifted(report, "y"), "column 'y', shaped exactly like the reference, should not be drifted"


@pytest.mark.points(2)
@pytest.mark.covers("ks-test", "threshold-strict")
def test_detects_variance_shift(drift):
    """Same mean, twice the spread: a distribution test flags it (a test of means would not)."""
    ref = reference_frame()
    new = calm_window()
    new["x"] *= 2.0
    report = drift.DriftDetector(ref).detect_drift(new, threshold=0.05)
    assert_ks(report, "x", ref["x"], new["x"], "standard deviation doubled")
    assert drifted(report, "x"), "column 'x' with doubled standard deviation (p ≈ 3e-10) should be drifted"


@pytest.mark.points(2)
@pytest.mark.covers("chi2-test", "threshold-strict")
def test_detects_category_frequency_shift(drift):
    """The same categories in other proportions are flagged."""
    ref = reference_frame()
    new = calm_window()
    new["colour"] = with_counts({"a": 125, "b": 125, "c": 125, "d": 125}, seed=3)
    report = drift.DriftDetector(ref).detect_drift(new, threshold=0.05)
    assert_chi2(report, "colour", ref["colour"], new["colour"], "shares 40/30/20/10 → 25 each")
    assert drifted(report, "colour"), "category shares moving from 40/30/20/10 to 25 each should be drift"


@pytest.mark.points(2)
@pytest.mark.covers("threshold-strict", "share-field", "report-verdict")
def test_calm_windows_are_not_flagged(drift):
    """Windows shaped exactly like the reference (p-values near 1) are not drift, at any threshold."""
    detector = drift.DriftDetector(reference_frame())
    for threshold in (0.05, 0.5):
        report = detector.detect_drift(calm_window(), threshold=threshold)
        flagged = [name for name in ("x", "y", "colour") if drifted(report, name)]
        assert not flagged, (
            f"with threshold={threshold}, no feature of a window shaped like the reference "
            f"(p-values near 1) should drift; got {flagged}. A feature drifts when p < threshold."
        )
        assert_close(field(report, "share_drifted", what="the drift report"), 0.0,
                     what="share_drifted of a calm window")
        assert not verdict(report), "a calm window should not be dataset drift"


@pytest.mark.points(1)
@pytest.mark.covers("threshold-strict")
def test_only_the_p_value_decides(drift):
    """A large PSI with a p-value near 1 is not drift: the verdict comes from p < threshold alone."""
    ref = pd.DataFrame({"x": spread(1000, seed=1)})
    # Two values in every other decile of the reference: half the PSI bins are empty (PSI ≈ 3.8),
    # yet the ten values follow the reference's distribution closely (KS p ≈ 1).
    window = pd.DataFrame({"x": stats.norm.ppf([0.05, 0.06, 0.25, 0.26, 0.45, 0.46, 0.65, 0.66, 0.85, 0.86])})
    expected_p = stats.ks_2samp(ref["x"], window["x"]).pvalue
    psi = quantile_bins_psi_kl(ref["x"].to_numpy(), window["x"].to_numpy(), 10)[0]
    report = drift.DriftDetector(ref).detect_drift(window, threshold=0.05)
    assert not drifted(report, "x"), (
        f"column 'x' with KS p-value {expected_p:.3f} should not drift at threshold 0.05, "
        f"although its PSI is {psi:.2f}: only the test's p-value decides"
    )


@pytest.mark.points(3)
@pytest.mark.covers("threshold-strict")
def test_threshold_is_strict(drift):
    """A feature drifts when p < threshold: not at p == threshold, but just above it."""
    ref = pd.DataFrame({"x": spread(1000, seed=1), "colour": with_counts({"a": 600, "b": 400}, seed=2)})
    new = pd.DataFrame({"x": spread(200, loc=0.28, seed=3), "colour": with_counts({"a": 105, "b": 95}, seed=4)})
    detector = drift.DriftDetector(ref)
    report = detector.detect_drift(new, threshold=0.05)
    assert_ks(report, "x", ref["x"], new["x"], "shifted by 0.28")  # p ≈ 0.025
    assert_chi2(report, "colour", ref["colour"], new["colour"], "60/40 → 52.5/47.5")  # p ≈ 0.05
    for name in ("x", "colour"):
        p = value(detector.detect_drift(new, threshold=0.05), name, "p_value")
        at = detector.detect_drift(new, threshold=p)
        assert not drifted(at, name), (
            f"column {name!r} with threshold equal to its p-value ({p!r}) should not drift: "
            "a feature drifts only when p < threshold"
        )
        above = detector.detect_drift(new, threshold=float(np.nextafter(p, 1.0)))
        assert drifted(above, name), (
            f"column {name!r} with threshold just above its p-value ({p!r}) should drift"
        )


@pytest.mark.points(2)
@pytest.mark.covers("threshold-default", "threshold-strict")
def test_threshold_default_and_other_values(drift):
    """threshold defaults to 0.05; 0.01 and 0.1 move the verdict of p ≈ 0.025 and p ≈ 0.078."""
    ref = pd.DataFrame({"a": spread(1000, seed=1), "b": spread(1000, seed=2)})
    new = pd.DataFrame({"a": spread(200, loc=0.28, seed=3), "b": spread(200, loc=0.24, seed=4)})
    detector = drift.DriftDetector(ref)
    p_a = stats.ks_2samp(ref["a"], new["a"]).pvalue
    p_b = stats.ks_2samp(ref["b"], new["b"]).pvalue
    cases = [("the default", detector.detect_drift(new), {"a"}),
             (0.01, detector.detect_drift(new, threshold=0.01), set()),
             (0.1, detector.detect_drift(new, threshold=0.1), {"a", "b"})]
    for threshold, report, expected in cases:
        got = {name for name in ("a", "b") if drifted(report, name)}
        assert got == expected, (
            f"with threshold {threshold} (p-values a={p_a:.3f}, b={p_b:.3f}) the drifted features "
            f"should be {sorted(expected)}; got {sorted(got)}"
        )


@pytest.mark.points(1)
@pytest.mark.covers("threshold-range")
@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.05, 5.0])
def test_threshold_outside_zero_one_is_refused(drift, threshold):
    """A threshold that is not strictly between 0 and 1 raises ValueError."""
    detector = drift.DriftDetector(reference_frame())
    detector.detect_drift(calm_window(), threshold=0.5)
    with learner_error(ValueError, what=f"detect_drift(..., threshold={threshold})"):
        detector.detect_drift(calm_window(), threshold=threshold)


def four_features(drifting: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four numeric features; the first ``drifting`` are shifted by 1 sd (p < 1e-40), the rest calm."""
    names = ["f1", "f2", "f3", "f4"]
    ref = pd.DataFrame({n: spread(2000, seed=i) for i, n in enumerate(names)})
    new = pd.DataFrame({n: spread(400, loc=1.0 if i < drifting else 0.0, seed=10 + i)
                        for i, n in enumerate(names)})
    return ref, new


@pytest.mark.points(2)
@pytest.mark.covers("share-boundary", "share-default", "share-field", "report-verdict")
def test_dataset_drifts_at_exactly_the_default_share(drift):
    """With the default drift_share 0.5, 2 of 4 drifted features is dataset drift; 1 of 4 is not."""
    for drifting, expected in ((2, True), (1, False), (4, True)):
        ref, new = four_features(drifting)
        report = drift.DriftDetector(ref).detect_drift(new)
        assert_close(field(report, "share_drifted", what="the drift report"), drifting / 4,
                     what=f"share_drifted with {drifting} of 4 features drifted")
        assert verdict(report) is expected, (
            f"with {drifting} of 4 features drifted (share {drifting / 4}) and the default "
            f"drift_share 0.5, the dataset should {'' if expected else 'not '}drift: "
            "it drifts when the share is at least drift_share"
        )


@pytest.mark.points(1)
@pytest.mark.covers("share-boundary", "report-verdict")
@pytest.mark.parametrize("drift_share, drifting, expected",
                         [(0.25, 1, True), (0.3, 1, False), (0.75, 3, True), (0.75, 2, False)])
def test_drift_share_parameter(drift, drift_share, drifting, expected):
    """drift_share sets the share of drifted features from which (inclusive) the dataset drifts."""
    ref, new = four_features(drifting)
    report = drift.DriftDetector(ref, drift_share=drift_share).detect_drift(new)
    assert verdict(report) is expected, (
        f"with {drifting} of 4 features drifted and drift_share={drift_share}, the dataset "
        f"should {'' if expected else 'not '}drift (it drifts when share >= drift_share)"
    )


# -- report and stats shape -------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("report-features", "feature-fields", "report-verdict")
def test_report_has_the_documented_fields(drift):
    """features has one entry per reference column, each with the documented fields."""
    report = drift.DriftDetector(reference_frame()).detect_drift(shifted_window(), threshold=0.07)
    features = field(report, "features", what="the drift report")
    assert sorted(features) == ["colour", "x", "y"], (
        f"report.features should have one entry per reference column ['colour', 'x', 'y']; got {list(features)}"
    )
    for name in ("x", "y", "colour"):
        entry = feature(report, name)
        for key in ("method", "statistic", "p_value", "psi", "kl_divergence", "drifted", "n_missing"):
            field(entry, key, what=f"report.features[{name!r}]")
    assert_close(field(report, "threshold", what="the drift report"), 0.07,
                 what="report.threshold after detect_drift(..., threshold=0.07)")
    assert verdict(report), "2 of 3 drifted features should be dataset drift"


@pytest.mark.points(1)
@pytest.mark.covers("report-json")
def test_report_is_json_serialisable(drift):
    """report.to_dict() (or a dict report) goes through json.dumps: no numpy bools or ints left."""
    window = shifted_window()
    window.loc[:4, "x"] = np.nan
    report = drift.DriftDetector(reference_frame()).detect_drift(window)
    data = report.to_dict() if hasattr(report, "to_dict") else report
    try:
        back = json.loads(json.dumps(data))
    except (TypeError, ValueError) as exc:
        raise AssertionError(
            f"the report's to_dict() should be JSON-serialisable; json.dumps raised {exc}. "
            "Turn numpy values into Python ones (bool(...), int(...), float(...))."
        ) from None
    entry = back["features"]["x"]
    assert entry["drifted"] is True and entry["n_missing"] == 5, (
        f"the JSON form of report.features['x'] should say drifted true and n_missing 5; got {entry}"
    )


@pytest.mark.points(2)
@pytest.mark.covers("stats-keys", "stats-kind", "stats-numeric", "stats-counts")
def test_compute_stats_describes_each_column(drift):
    """compute_stats: one dict per column with kind and n; mean and std, or category counts."""
    frame = reference_frame()
    frame.loc[: 299, "x"] = np.nan  # 300 missing values
    frame.loc[: 9, "colour"] = None
    result = drift.DriftDetector(frame).compute_stats(frame)
    for name in ("x", "y", "colour"):
        assert name in result, f"compute_stats should have an entry for column {name!r}; got {list(result)}"
    x, colour = result["x"], result["colour"]
    assert field(x, "kind", what="compute_stats(...)['x']") == "numeric", (
        f"compute_stats(...)['x']['kind'] should be 'numeric'; got {field(x, 'kind', what='x')!r}")
    assert field(colour, "kind", what="compute_stats(...)['colour']") == "categorical", (
        f"compute_stats(...)['colour']['kind'] should be 'categorical'; got {field(colour, 'kind', what='c')!r}")
    assert_close(field(x, "n", what="compute_stats(...)['x']"), 2700,
                 what="compute_stats(...)['x']['n'] (3000 rows, 300 missing)")
    assert_close(field(colour, "n", what="compute_stats(...)['colour']"), 2990,
                 what="compute_stats(...)['colour']['n'] (3000 rows, 10 missing)")
    values = frame["x"].dropna().to_numpy()
    assert_close(field(x, "mean", what="compute_stats(...)['x']"), values.mean(), abs_=1e-9,
                 what="compute_stats(...)['x']['mean'] of the non-missing values")
    got_std = number(field(x, "std", what="compute_stats(...)['x']"), what="compute_stats(...)['x']['std']")
    assert any(math.isclose(got_std, values.std(ddof=d), rel_tol=1e-6) for d in (0, 1)), (
        f"compute_stats(...)['x']['std'] should be {values.std(ddof=1):.6g}; got {got_std:.6g}"
    )
    counts = field(colour, "counts", what="compute_stats(...)['colour']")
    got = {k: int(v) for k, v in dict(counts).items() if v}
    expected = frame["colour"].value_counts().to_dict()
    assert got == expected, f"compute_stats(...)['colour']['counts'] should be {expected}; got {got}"
    # Small columns: two values, one value, and a category seen once.
    tiny = pd.DataFrame({"pair": [1.0, 3.0, np.nan], "one": [5.0, np.nan, np.nan], "colour": ["a", "b", "b"]})
    result = drift.DriftDetector(tiny).compute_stats(tiny)
    got_std = number(field(result["pair"], "std", what="compute_stats(...)['pair']"),
                     what="compute_stats(...)['pair']['std']")
    assert any(math.isclose(got_std, s) for s in (math.sqrt(2), 1.0)), (
        f"compute_stats(...)['pair']['std'] of [1, 3] should be {math.sqrt(2):.6g} (or 1 with ddof=0); got {got_std}"
    )
    got_std = number(field(result["one"], "std", what="compute_stats(...)['one']"),
                     what="compute_stats(...)['one']['std']")
    assert got_std == 0 or math.isnan(got_std), (
        f"compute_stats(...)['one']['std'] of a single value should be 0 (or NaN); got {got_std}"
    )
    counts = field(result["colour"], "counts", what="compute_stats(...)['colour']")
    got = {k: int(v) for k, v in dict(counts).items() if v}
    assert got == {"a": 1, "b": 2}, (
        f"compute_stats(...)['colour']['counts'] of ['a', 'b', 'b'] should be {{'a': 1, 'b': 2}}; got {got}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("stats-correlations")
def test_compute_stats_holds_the_correlation_matrix(drift):
    """compute_stats(...)["__correlations__"] is the numeric columns' Pearson correlation matrix."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=500), "colour": with_counts({"a": 250, "b": 250})})
    frame["y"] = 0.6 * frame["x"] + rng.normal(size=500)
    frame["z"] = -frame["y"] + rng.normal(size=500)
    result = drift.DriftDetector(frame).compute_stats(frame)
    assert "__correlations__" in result, (
        f"compute_stats should have the key '__correlations__'; got {list(result)}"
    )
    found = result["__correlations__"]
    if isinstance(found, Mapping) and not isinstance(found, pd.DataFrame):
        found = found.get("matrix")
    assert isinstance(found, pd.DataFrame), (
        "compute_stats(...)['__correlations__'] should be a DataFrame (or a dict with it under "
        f"'matrix'); got {type(found).__name__}"
    )
    expected = frame[["x", "y", "z"]].corr()
    try:
        got = found.loc[["x", "y", "z"], ["x", "y", "z"]].to_numpy(dtype=float)
    except KeyError:
        raise AssertionError(
            "the correlation matrix should have the numeric columns ['x', 'y', 'z'] as rows and "
            f"columns; got rows {list(found.index)} and columns {list(found.columns)}"
        ) from None
    assert np.allclose(got, expected.to_numpy(), atol=1e-9), (
        f"the correlation matrix should be\n{expected.round(4)}\ngot\n{found.round(4)}"
    )


@pytest.mark.points(2)
@pytest.mark.hidden
@pytest.mark.covers("stats-once")
def test_reference_is_summarised_once(drift):
    """Windows are compared with stats taken at construction, not with the live reference frame."""
    # Under sealed grading the frame lives in the learner's process, changed there through a proxy.
    ref = in_learner_process(reference_frame())
    detector = drift.DriftDetector(ref)
    ref["x"] += 5.0  # the caller reuses its frame; the detector must not see the change
    report = detector.detect_drift(calm_window())
    assert not drifted(report, "x"), (
        "a window shaped like the original reference should not drift; the detector should keep "
        "the stats it computed in __init__ rather than re-read the reference frame"
    )


# -- bad and missing input --------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("missing-dropped")
def test_missing_values_are_left_out_of_the_tests(drift):
    """NaNs in the window or the reference are dropped: statistics equal scipy's on the rest."""
    ref = random_frame(2000, seed=24)
    ref["colour"] = with_counts(REF_COLOURS)[:2000]
    ref.loc[::50, "y"] = np.nan
    ref.loc[::40, "colour"] = None
    new = random_frame(400, seed=25, loc=0.2)
    new["colour"] = with_counts({"a": 150, "b": 100, "c": 100, "d": 50}, seed=8)
    new.loc[::10, "x"] = np.nan
    new.loc[::8, "colour"] = None
    report = drift.DriftDetector(ref).detect_drift(new)
    for column in ("x", "y"):
        got = value(report, column, "statistic")
        assert not math.isnan(got), f"KS statistic of {column!r} with missing values should not be NaN"
        assert_ks(report, column, ref[column].dropna(), new[column].dropna(),
                  "its missing values left out")
    assert_chi2(report, "colour", ref["colour"], new["colour"], "missing values left out, not a category")


@pytest.mark.points(2)
@pytest.mark.covers("missing-counted", "n-rows")
def test_missing_values_and_rows_are_counted(drift):
    """n_missing counts each column's NaNs in the window; n_rows counts every row of the window."""
    detector = drift.DriftDetector(reference_frame())
    window = calm_window()
    window.loc[::10, "x"] = np.nan  # 50
    window.loc[:6, "colour"] = None  # 7
    report = detector.detect_drift(window)
    for name, expected in (("x", 50), ("y", 0), ("colour", 7)):
        assert_close(value(report, name, "n_missing"), expected,
                     what=f"report.features[{name!r}].n_missing")
    assert_close(field(report, "n_rows", what="the drift report"), 500,
                 what="report.n_rows of a 500-row window (rows with missing values included)")


@pytest.mark.points(2)
@pytest.mark.covers("missing-column")
def test_missing_column_gives_clear_error(drift):
    """A window without a reference column is refused with a ValueError naming the column."""
    detector = drift.DriftDetector(reference_frame())
    window = calm_window().drop(columns=["colour"])
    with learner_error(ValueError, what="detect_drift on a window without 'colour'") as caught:
        detector.detect_drift(window)
    assert "colour" in str(caught.value), (
        f"the error for a missing column should name it ('colour'); got {caught.value!r}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("empty-column")
@pytest.mark.parametrize("empty", ["basket_size", "channel"], ids=["numeric", "categorical"])
def test_all_missing_column_gives_clear_error(drift, empty):
    """A window whose column (numeric or categorical) has no values at all is refused with a ValueError naming it."""
    ref = pd.DataFrame({"x": spread(1000, seed=1), "basket_size": spread_exp(1000, seed=2),
                        "channel": with_counts({"web": 600, "store": 400}, seed=3)})
    detector = drift.DriftDetector(ref)
    window = pd.DataFrame({"x": spread(200, seed=3), "basket_size": spread_exp(200, seed=4),
                           "channel": with_counts({"web": 120, "store": 80}, seed=5)})
    window[empty] = pd.Series([np.nan] * 200, dtype=float if empty == "basket_size" else object)
    with learner_error(ValueError, what=f"detect_drift on a window whose {empty!r} is all missing") as caught:
        detector.detect_drift(window)
    assert empty in str(caught.value), (
        f"the error for an all-missing column should name it ({empty!r}); got {caught.value!r}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("extra-ignored", "ignored-columns", "share-field")
def test_extra_column_is_ignored_and_listed(drift):
    """A column the reference never had gets no entry in features and is listed in ignored_columns."""
    detector = drift.DriftDetector(reference_frame())
    window = calm_window()
    window["debug_id"] = np.arange(len(window))
    report = detector.detect_drift(window)
    features = field(report, "features", what="the drift report")
    assert "debug_id" not in features, "report.features should list only the reference's columns"
    ignored = list(field(report, "ignored_columns", what="the drift report"))
    assert ignored == ["debug_id"], f"report.ignored_columns should be ['debug_id']; got {ignored}"
    shifted = shifted_window()  # x and y drift, colour does not: 2 of the 3 features compared
    shifted["debug_id"] = np.arange(len(shifted))
    share = number(field(detector.detect_drift(shifted), "share_drifted", what="the drift report"),
                   what="report.share_drifted")
    assert_close(share, 2 / 3, what="share_drifted with an extra column (x and y drifted, of the 3 "
                                    "reference features; the extra column is not a feature compared)")


@pytest.mark.points(1)
@pytest.mark.covers("reference-type")
@pytest.mark.parametrize("bad", ["a list of dicts", "a numpy array"])
def test_reference_must_be_a_dataframe(drift, bad):
    """A reference that is not a pandas DataFrame raises TypeError."""
    drift.DriftDetector(reference_frame())  # a valid reference is accepted
    data = [{"x": 1.0}, {"x": 2.0}] if bad == "a list of dicts" else np.arange(10.0).reshape(5, 2)
    with learner_error(TypeError, what=f"DriftDetector({bad})"):
        drift.DriftDetector(data)


@pytest.mark.points(1)
@pytest.mark.covers("reference-empty")
def test_empty_reference_is_refused(drift):
    """An empty reference DataFrame (no rows, or no columns) raises ValueError."""
    drift.DriftDetector(reference_frame())  # a valid reference is accepted
    for empty, what in ((pd.DataFrame({"x": pd.Series([], dtype=float)}), "no rows"),
                        (pd.DataFrame(), "no columns")):
        with learner_error(ValueError, what=f"DriftDetector on a DataFrame with {what}"):
            drift.DriftDetector(empty)


# -- alerts -----------------------------------------------------------------------------------


def alert_result(value_, *, what: str) -> bool:
    """alert_if_drift's return value, which should be True or False."""
    __tracebackhide__ = True
    assert value_ in (True, False) and value_ is not None, (
        f"{what} should return True or False; got {value_!r}"
    )
    return bool(value_)


@pytest.mark.points(4)
@pytest.mark.covers("episode-start", "episode-once", "episode-end", "alert-post", "alert-payload",
                    "alert-return")
def test_alert_reaches_webhook_once_per_drift_episode(drift, receiver):
    """One POST when drift starts, none while it lasts, a new one after a calm window."""
    detector = drift.DriftDetector(reference_frame())
    steps = [("drifted", shifted_window(seed=20), True, 1),
             ("drifted again", shifted_window(seed=30), False, 1),
             ("calm", calm_window(seed=40), False, 1),
             ("calm again", calm_window(seed=50), False, 1),
             ("drifted after calm", shifted_window(seed=60), True, 2),
             ("drifted", shifted_window(seed=70), False, 2)]
    history = []
    for label, window, should_send, calls_after in steps:
        history.append(label)
        sent = alert_result(detector.alert_if_drift(window, webhook=receiver.url),
                            what=f"alert_if_drift on window {len(history)} ({label})")
        calls = receiver.wait_for(calls_after, timeout=2)
        assert len(calls) == calls_after, (
            f"after the windows {history} the receiver should have {calls_after} alert(s); got "
            f"{len(calls)}. One alert per episode: an episode ends with a window without drift."
        )
        assert sent is should_send, (
            f"alert_if_drift on window {len(history)} ({label}) should return {should_send}; got {sent}"
        )
    first = calls[0]
    assert first.method == "POST", f"the alert should be POSTed; the receiver got a {first.method}"
    try:
        payload = first.json()
    except ValueError:
        raise AssertionError(f"the alert's body should be JSON; got {first.body[:200]!r}") from None
    assert isinstance(payload, dict), f"the alert should be a JSON object; got {payload!r}"
    names = field(payload, "drifted_features", what="the alert's JSON body")
    assert sorted(names) == ["x", "y"], f"the alert should name the drifted features ['x', 'y']; got {names}"


@pytest.mark.points(2)
@pytest.mark.covers("alert-return", "episode-start")
def test_no_alert_without_drift(drift, receiver):
    """Windows shaped like the reference send nothing and return False."""
    detector = drift.DriftDetector(reference_frame())
    for seed in (38, 39, 40):
        sent = alert_result(detector.alert_if_drift(calm_window(seed=seed), webhook=receiver.url),
                            what="alert_if_drift on a calm window")
        assert sent is False, "alert_if_drift on a calm window should return False"
    assert not receiver.calls, f"no alert should be sent without drift; the receiver got {len(receiver.calls)}"


@pytest.mark.points(1)
@pytest.mark.covers("alert-callable", "alert-payload")
def test_alert_can_go_to_a_callable(drift):
    """A callable webhook receives the alert payload as a dict."""
    received = []
    detector = drift.DriftDetector(reference_frame(), drift_share=0.3)
    window = shifted_window()
    window["y"] -= 1.0  # only x drifts: 1 of 3 features
    detector.alert_if_drift(window, webhook=received.append)
    assert len(received) == 1, f"the callable should be called once; it was called {len(received)} times"
    assert isinstance(received[0], Mapping), f"the callable should get a dict; got {type(received[0]).__name__}"
    names = field(received[0], "drifted_features", what="the alert payload")
    assert list(names) == ["x"], f"the payload should name only the drifted feature ['x']; got {names}"


@pytest.mark.points(2)
@pytest.mark.covers("alert-threshold")
def test_alert_uses_the_given_threshold(drift):
    """alert_if_drift(..., threshold=t) judges the window at t: p ≈ 0.025 alerts at 0.05, not at 0.01."""
    received = []
    detector = drift.DriftDetector(pd.DataFrame({"x": spread(1000, seed=1)}), webhook=received.append)
    window = pd.DataFrame({"x": spread(200, loc=0.28, seed=3)})  # p ≈ 0.025
    sent = alert_result(detector.alert_if_drift(window, threshold=0.01), what="alert_if_drift at 0.01")
    assert not sent and not received, "with threshold=0.01 a window with p ≈ 0.025 should send no alert"
    sent = alert_result(detector.alert_if_drift(window, threshold=0.05), what="alert_if_drift at 0.05")
    assert sent and len(received) == 1, "with threshold=0.05 a window with p ≈ 0.025 should send an alert"


@pytest.mark.points(2)
@pytest.mark.covers("webhook-default")
def test_webhook_defaults_to_the_constructors(drift, receiver):
    """Without webhook=, the alert goes to the constructor's webhook; with it, to the one given."""
    detector = drift.DriftDetector(reference_frame(), webhook=receiver.url)
    detector.alert_if_drift(shifted_window())
    calls = receiver.wait_for(1, timeout=2)
    assert len(calls) == 1, f"the constructor's webhook should get the alert; it got {len(calls)}"
    received = []
    detector = drift.DriftDetector(reference_frame(), webhook=receiver.url)
    detector.alert_if_drift(shifted_window(), webhook=received.append)
    assert len(received) == 1 and len(receiver.calls) == 1, (
        "a webhook given to alert_if_drift should be used instead of the constructor's; the callable "
        f"got {len(received)} alert(s) and the constructor's URL {len(receiver.calls) - 1}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("webhook-missing")
def test_missing_webhook_is_an_error(drift):
    """No webhook here nor in the constructor: alert_if_drift raises ValueError."""
    detector = drift.DriftDetector(reference_frame())
    with learner_error(ValueError, what="alert_if_drift on a drifted window with no webhook anywhere"):
        detector.alert_if_drift(shifted_window())


@pytest.mark.points(3)
@pytest.mark.covers("alert-failure", "alert-retry")
def test_failed_delivery_raises_and_is_retried(drift, receiver):
    """A receiver answering 500 makes alert_if_drift raise; the next drifted window sends again."""
    detector = drift.DriftDetector(reference_frame())
    receiver.status = 500
    with learner_error(Exception, what="alert_if_drift when the receiver answers 500"):
        detector.alert_if_drift(shifted_window(seed=20), webhook=receiver.url)
    assert len(receiver.wait_for(1, timeout=2)) == 1, "the alert should have been POSTed once"
    receiver.status = 200
    sent = alert_result(detector.alert_if_drift(shifted_window(seed=30), webhook=receiver.url),
                        what="alert_if_drift after a failed delivery")
    calls = receiver.wait_for(2, timeout=2)
    assert sent and len(calls) == 2, (
        "an alert that was not delivered should be tried again on the next drifted window; "
        f"alert_if_drift returned {sent} and the receiver got {len(calls) - 1} new alert(s)"
    )
    sent = alert_result(detector.alert_if_drift(shifted_window(seed=40), webhook=receiver.url),
                        what="alert_if_drift once the alert was delivered")
    assert not sent and len(receiver.calls) == 2, (
        "once the alert was delivered, the episode has started: the next drifted window sends nothing"
    )


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/alerts"


@pytest.mark.points(2)
@pytest.mark.covers("alert-failure", "alert-retry")
@pytest.mark.parametrize("failure", ["unreachable URL", "callable that raises"])
def test_undeliverable_alert_raises_and_is_retried(drift, failure):
    """An unreachable webhook or a raising callable makes alert_if_drift raise; the next call retries."""
    received = []
    attempts = []

    def flaky(payload):
        attempts.append(payload)
        if len(attempts) == 1:
            raise RuntimeError("the alerting service is down")
        received.append(payload)

    first = closed_port_url() if failure == "unreachable URL" else flaky
    then = received.append if failure == "unreachable URL" else flaky
    detector = drift.DriftDetector(reference_frame())
    with learner_error(Exception, what=f"alert_if_drift with a {failure}"):
        detector.alert_if_drift(shifted_window(seed=20), webhook=first)
    sent = alert_result(detector.alert_if_drift(shifted_window(seed=30), webhook=then),
                        what=f"alert_if_drift after a {failure}")
    assert sent and len(received) == 1, (
        f"after a {failure}, the next drifted window should send the alert again; "
        f"alert_if_drift returned {sent} and {len(received)} alert(s) arrived"
    )
