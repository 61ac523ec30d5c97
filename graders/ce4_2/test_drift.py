"""Graders for CE4.2 — data drift detection.

Every statistic is compared with an independent reference: scipy's
``ks_2samp`` and ``chi2_contingency``, and the textbook PSI/KL formulas written
out below. Reports may be any object (or dict) with the documented fields.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbook.checks import assert_close, field, learner_error, number

EPSILON = 1e-4


# -- data and access helpers -------------------------------------------------------------


def numeric_frame(n: int, seed: int, *, loc: float = 0.0, scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(loc, scale, n), "y": rng.exponential(1.0, n)})


def category_frame(n: int, seed: int, probs=(0.4, 0.3, 0.2, 0.1), cats=("a", "b", "c", "d")):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"colour": rng.choice(np.array(cats, dtype=object), n, p=probs)})


def mixed_frame(n: int, seed: int) -> pd.DataFrame:
    frame = numeric_frame(n, seed)
    frame["colour"] = category_frame(n, seed + 1)["colour"]
    return frame


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


def aligned_table(ref: pd.Series, new: pd.Series) -> np.ndarray:
    """2 x k counts of both samples over the union of their categories."""
    cats = sorted(set(ref.dropna()) | set(new.dropna()))
    return np.array([[int((ref == c).sum()) for c in cats], [int((new == c).sum()) for c in cats]])


def reference_psi_kl(ref: np.ndarray, new: np.ndarray, bins: int = 10) -> tuple[float, float, float]:
    """Textbook PSI, KL(new||ref) and KL(ref||new) on reference-quantile bins, ±inf outer edges."""
    edges = np.quantile(ref, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.histogram(ref, edges)[0] / ref.size
    q = np.histogram(new, edges)[0] / new.size
    return _psi_kl(p, q)


def _psi_kl(p: np.ndarray, q: np.ndarray) -> tuple[float, float, float]:
    p = np.where(p == 0, EPSILON, p)
    q = np.where(q == 0, EPSILON, q)
    return (
        float(np.sum((q - p) * np.log(q / p))),
        float(np.sum(q * np.log(q / p))),
        float(np.sum(p * np.log(p / q))),
    )


@pytest.fixture
def drift(load_module):
    return load_module("drift")


# -- statistics against independent references -------------------------------------------


@pytest.mark.points(1)
@pytest.mark.parametrize("shift", [0.0, 0.3, -0.3, "wider"])
def test_ks_statistic_and_p_value_match_scipy(drift, shift):
    """Numeric features: the two-sided KS statistic and p-value equal scipy's ks_2samp."""
    ref = numeric_frame(2000, seed=1)
    new = (numeric_frame(300, seed=2, scale=1.6) if shift == "wider"
           else numeric_frame(300, seed=2, loc=shift))
    report = drift.DriftDetector(ref).detect_drift(new, threshold=0.05)
    for column in ("x", "y"):
        expected = stats.ks_2samp(ref[column], new[column])
        assert_close(value(report, column, "statistic"), expected.statistic,
                     what=f"KS statistic of {column!r} (shift {shift})")
        assert_close(value(report, column, "p_value"), expected.pvalue, rel=1e-4, abs_=1e-12,
                     what=f"KS p-value of {column!r} (shift {shift})")


@pytest.mark.points(2)
def test_ks_matches_scipy_on_large_samples(drift):
    """Large windows (scipy's asymptotic p-value) still match ks_2samp, ties included."""
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


def _chi2_matches(got_stat: float, got_p: float, table: np.ndarray) -> bool:
    """Either Yates-corrected or uncorrected chi-square is accepted (they differ only at dof 1)."""
    for correction in (True, False):
        result = stats.chi2_contingency(table, correction=correction)
        if math.isclose(got_stat, result.statistic, rel_tol=1e-6, abs_tol=1e-9) and math.isclose(
            got_p, result.pvalue, rel_tol=1e-4, abs_tol=1e-12
        ):
            return True
    return False


@pytest.mark.points(2)
def test_chi_square_matches_scipy_with_aligned_categories(drift):
    """Categorical features: chi-square of homogeneity on category-aligned counts, as scipy."""
    ref = category_frame(3000, seed=3)
    # Same categories, listed and drawn in another order, with other frequencies.
    new = category_frame(400, seed=4, probs=(0.1, 0.2, 0.3, 0.4), cats=("d", "c", "b", "a"))
    new["colour"] = new["colour"].map({"d": "a", "c": "b", "b": "c", "a": "d"})
    report = drift.DriftDetector(ref).detect_drift(new)
    table = aligned_table(ref["colour"], new["colour"])
    got_stat, got_p = value(report, "colour", "statistic"), value(report, "colour", "p_value")
    expected = stats.chi2_contingency(table)
    assert _chi2_matches(got_stat, got_p, table), (
        f"chi-square of 'colour' should be {expected.statistic:.6g} (p={expected.pvalue:.3g}) "
        f"on counts lined up by category {table.tolist()}; got {got_stat:.6g} (p={got_p:.3g})"
    )


@pytest.mark.points(2)
def test_new_category_is_counted_and_detected(drift):
    """A category the reference never saw is part of the test, and its arrival is drift."""
    ref = category_frame(3000, seed=5)
    new = category_frame(400, seed=6, probs=(0.3, 0.25, 0.15, 0.05, 0.25),
                         cats=("a", "b", "c", "d", "e"))
    report = drift.DriftDetector(ref).detect_drift(new)
    table = aligned_table(ref["colour"], new["colour"])
    got_stat, got_p = value(report, "colour", "statistic"), value(report, "colour", "p_value")
    expected = stats.chi2_contingency(table)
    assert _chi2_matches(got_stat, got_p, table), (
        f"chi-square of 'colour' with the new category 'e' should be {expected.statistic:.6g}; "
        f"got {got_stat:.6g}. Count categories of both samples, not only the reference's."
    )
    assert drifted(report, "colour"), "a new category taking 25% of the window should be drift"


@pytest.mark.points(1)
@pytest.mark.parametrize("loc", [0.1, 1.0])
def test_psi_matches_independent_formula(drift, loc):
    """Numeric PSI is the textbook formula on reference-quantile bins (other sane bins accepted)."""
    ref = numeric_frame(5000, seed=8)
    new = numeric_frame(1000, seed=9, loc=loc)
    report = drift.DriftDetector(ref).detect_drift(new)
    expected, _, _ = reference_psi_kl(ref["x"].to_numpy(), new["x"].to_numpy())
    got = value(report, "x", "psi")
    # 10 quantile bins is the convention; 5-20 bins or equal-width bins land within this band.
    assert abs(got - expected) <= max(0.03, 0.35 * expected), (
        f"PSI of 'x' shifted by {loc} should be about {expected:.4f} (10 reference-quantile "
        f"bins, epsilon {EPSILON}); got {got:.4f}"
    )
    if loc >= 1.0:
        assert got > 0.25, f"PSI of a one-standard-deviation shift should exceed 0.25; got {got:.4f}"
    else:
        assert got < 0.1, f"PSI of a 0.1-standard-deviation shift should stay below 0.1; got {got:.4f}"


@pytest.mark.points(2)
def test_psi_is_finite_when_bins_are_empty(drift):
    """Empty bins get a small epsilon share: PSI stays finite (and large) instead of inf or NaN."""
    ref = numeric_frame(5000, seed=10)
    new = pd.DataFrame({"x": np.linspace(10, 11, 500), "y": np.linspace(10, 11, 500)})
    report = drift.DriftDetector(ref).detect_drift(new)
    got = value(report, "x", "psi")
    expected, _, _ = reference_psi_kl(ref["x"].to_numpy(), new["x"].to_numpy())
    assert math.isfinite(got), (
        f"PSI with empty bins should be finite (give empty bins a share of about {EPSILON}); got {got}"
    )
    assert abs(got - expected) <= 0.35 * expected, (
        f"PSI of a window beyond the reference's range should be about {expected:.3f}; got {got:.3f}"
    )


@pytest.mark.points(2)
def test_kl_divergence_matches_independent_formula(drift):
    """KL divergence on the PSI bins, numeric and categorical (either direction accepted)."""
    ref = mixed_frame(5000, seed=11)
    new = numeric_frame(1000, seed=12, loc=0.5)
    new["colour"] = category_frame(1000, seed=13, probs=(0.25, 0.25, 0.25, 0.25))["colour"]
    report = drift.DriftDetector(ref).detect_drift(new)
    _, kl_new_ref, kl_ref_new = reference_psi_kl(ref["x"].to_numpy(), new["x"].to_numpy())
    got = value(report, "x", "kl_divergence")
    assert any(abs(got - e) <= max(0.01, 0.35 * e) for e in (kl_new_ref, kl_ref_new)), (
        f"KL divergence of 'x' should be about {kl_new_ref:.4f} (KL(new||ref)) or "
        f"{kl_ref_new:.4f} (KL(ref||new)); got {got:.4f}"
    )
    table = aligned_table(ref["colour"], new["colour"])
    shares = table / table.sum(axis=1, keepdims=True)
    _, cat_new_ref, cat_ref_new = _psi_kl(shares[0], shares[1])
    got = value(report, "colour", "kl_divergence")
    assert any(math.isclose(got, e, rel_tol=1e-3, abs_tol=1e-6) for e in (cat_new_ref, cat_ref_new)), (
        f"KL divergence of 'colour' should be {cat_new_ref:.5f} (KL(new||ref)); got {got:.5f}"
    )


# -- detection ---------------------------------------------------------------------------


@pytest.mark.points(2)
def test_detects_mean_shift(drift):
    """A shift of the mean by half a standard deviation is flagged; the unshifted column is not."""
    ref = numeric_frame(3000, seed=14)
    new = numeric_frame(500, seed=15)
    new["x"] = new["x"] + 0.5
    report = drift.DriftDetector(ref).detect_drift(new, threshold=0.05)
    assert drifted(report, "x"), "column 'x' with its mean shifted by 0.5 sd should be flagged as drifted"
    assert not drifted(report, "y"), "column 'y', drawn like the reference, should not be flagged"


@pytest.mark.points(2)
def test_detects_variance_shift(drift):
    """Same mean, twice the spread: a distribution test flags it (a test of means would not)."""
    ref = numeric_frame(3000, seed=16)
    new = numeric_frame(500, seed=17, scale=2.0)
    report = drift.DriftDetector(ref).detect_drift(new, threshold=0.05)
    assert drifted(report, "x"), "column 'x' with doubled standard deviation should be flagged as drifted"


@pytest.mark.points(2)
def test_detects_category_frequency_shift(drift):
    """The same categories in other proportions are flagged."""
    ref = category_frame(3000, seed=18)
    new = category_frame(500, seed=19, probs=(0.25, 0.25, 0.25, 0.25))
    report = drift.DriftDetector(ref).detect_drift(new, threshold=0.05)
    assert drifted(report, "colour"), "category shares moving from 40/30/20/10 to 25 each should be drift"


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_false_positive_rate_stays_near_threshold(drift):
    """On windows drawn like the reference, features are flagged at about the threshold's rate."""
    ref = mixed_frame(1000, seed=20)
    detector = drift.DriftDetector(ref)
    windows = [mixed_frame(200, seed=1000 + i) for i in range(150)]
    for threshold, low, high in ((0.05, 0.02, 0.09), (0.01, 0.0, 0.03)):
        flags = [
            drifted(report, name)
            for report in (detector.detect_drift(w, threshold=threshold) for w in windows)
            for name in ("x", "y", "colour")
        ]
        rate = sum(flags) / len(flags)
        assert low <= rate <= high, (
            f"with threshold={threshold}, {len(flags)} same-distribution feature tests should be "
            f"flagged at a rate near {threshold}; got {rate:.3f}. A feature drifts when p < threshold."
        )


@pytest.mark.points(2)
def test_dataset_verdict_follows_share_of_drifted_features(drift):
    """share_drifted counts drifted features; the dataset drifts when at least half of them do."""
    ref = mixed_frame(3000, seed=21)
    detector = drift.DriftDetector(ref)
    calm = mixed_frame(500, seed=22)
    report = detector.detect_drift(calm)
    assert_close(field(report, "share_drifted", what="the drift report"), 0.0,
                 what="share_drifted of a window drawn like the reference")
    assert not field(report, "drifted", what="the drift report"), "a calm window should not be dataset drift"
    shifted = mixed_frame(500, seed=23)
    shifted["x"] += 1.0
    shifted["y"] += 1.0
    report = detector.detect_drift(shifted)
    assert_close(field(report, "share_drifted", what="the drift report"), 2 / 3,
                 what="share_drifted with 2 of 3 features shifted")
    assert field(report, "drifted", what="the drift report"), "2 of 3 drifted features should be dataset drift"


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.points(2)
def test_missing_values_are_left_out_of_the_tests(drift):
    """NaNs in the window or the reference are dropped: statistics equal scipy's on the rest."""
    ref = numeric_frame(2000, seed=24)
    ref.loc[::50, "y"] = np.nan
    new = numeric_frame(400, seed=25, loc=0.2)
    new.loc[::10, "x"] = np.nan
    report = drift.DriftDetector(ref).detect_drift(new)
    for column in ("x", "y"):
        expected = stats.ks_2samp(ref[column].dropna(), new[column].dropna())
        got = value(report, column, "statistic")
        assert not math.isnan(got), f"KS statistic of {column!r} with missing values should not be NaN"
        assert_close(got, expected.statistic,
                     what=f"KS statistic of {column!r} with its missing values left out")
        assert_close(value(report, column, "p_value"), expected.pvalue, rel=1e-4, abs_=1e-12,
                     what=f"KS p-value of {column!r} with its missing values left out")


@pytest.mark.points(2)
def test_missing_column_gives_clear_error(drift):
    """A window without a reference column is refused with an error naming the column."""
    detector = drift.DriftDetector(mixed_frame(500, seed=26))
    window = mixed_frame(100, seed=27).drop(columns=["colour"])
    with learner_error(ValueError, KeyError, what="detect_drift on a window without 'colour'") as caught:
        detector.detect_drift(window)
    assert "colour" in str(caught.value), (
        f"the error for a missing column should name it ('colour'); got {caught.value!r}"
    )


@pytest.mark.points(1)
def test_extra_column_is_not_reported_as_drift(drift):
    """A column the reference never had does not crash detection or count towards drift."""
    detector = drift.DriftDetector(numeric_frame(1000, seed=28))
    window = numeric_frame(200, seed=29)
    window["debug_id"] = np.arange(200)
    report = detector.detect_drift(window)
    features = field(report, "features", what="the drift report")
    assert "debug_id" not in features, "report.features should list only the reference's columns"


@pytest.mark.points(2)
@pytest.mark.hidden
def test_reference_is_summarised_once(drift):
    """Windows are compared with stats taken at construction, not with the live reference frame."""
    ref = numeric_frame(2000, seed=30)
    detector = drift.DriftDetector(ref)
    ref["x"] += 5.0  # the caller reuses its frame; the detector must not see the change
    report = detector.detect_drift(numeric_frame(300, seed=31))
    assert not drifted(report, "x"), (
        "a window drawn like the original reference should not drift; the detector should keep "
        "the stats it computed in __init__ rather than re-read the reference frame"
    )


# -- alerts --------------------------------------------------------------------------------


def shifted_window(seed: int) -> pd.DataFrame:
    window = mixed_frame(400, seed=seed)
    window["x"] += 1.0
    window["y"] += 1.0
    return window


@pytest.mark.points(4)
def test_alert_reaches_webhook_once_per_drift_episode(drift, webhook_receiver):
    """One POST when drift starts, none while it lasts, a new one after a calm window."""
    detector = drift.DriftDetector(mixed_frame(3000, seed=32))
    detector.alert_if_drift(shifted_window(33), webhook=webhook_receiver.url)
    detector.alert_if_drift(shifted_window(34), webhook=webhook_receiver.url)
    calls = webhook_receiver.wait_for(1, timeout=3)
    assert len(calls) == 1, (
        f"two drifted windows in a row are one episode and should send 1 alert; the receiver got {len(calls)}"
    )
    payload = calls[0].json()
    names = field(payload, "drifted_features", what="the alert's JSON body")
    assert sorted(names) == ["x", "y"], f"the alert should name the drifted features ['x', 'y']; got {names}"
    detector.alert_if_drift(mixed_frame(400, seed=35), webhook=webhook_receiver.url)
    detector.alert_if_drift(shifted_window(36), webhook=webhook_receiver.url)
    calls = webhook_receiver.wait_for(2, timeout=3)
    assert len(calls) == 2, (
        f"drift after a calm window is a new episode and should send a 2nd alert; the receiver got {len(calls)}"
    )


@pytest.mark.points(2)
def test_no_alert_without_drift(drift, webhook_receiver):
    """Windows drawn like the reference send nothing."""
    detector = drift.DriftDetector(mixed_frame(3000, seed=37))
    for seed in (38, 39, 40):
        detector.alert_if_drift(mixed_frame(400, seed=seed), webhook=webhook_receiver.url)
    calls = webhook_receiver.wait_for(1, timeout=0.5)
    assert not calls, f"no alert should be sent without drift; the receiver got {len(calls)}"


@pytest.mark.points(1)
def test_alert_can_go_to_a_callable(drift):
    """A callable webhook receives the alert payload as a dict."""
    received = []
    detector = drift.DriftDetector(mixed_frame(3000, seed=41))
    detector.alert_if_drift(shifted_window(42), webhook=received.append)
    assert len(received) == 1, f"the callable should be called once; it was called {len(received)} times"
    names = field(received[0], "drifted_features", what="the alert payload")
    assert sorted(names) == ["x", "y"], f"the payload should name ['x', 'y']; got {names}"
