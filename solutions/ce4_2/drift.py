"""CE4.2 — Data drift detection.

Compare a window of new (production) data with the reference data the model
was trained on, feature by feature, and raise an alert when it has drifted.

The conventions this exercise asks for (the graders check them against scipy
and an independent formula):

* Which test a column gets. By default, number columns are numeric features
  and text or category columns are categorical features [categorical-default].
  Bool columns are categorical, although pandas counts them as numbers [bool-categorical].
* Numeric feature: the two-sided two-sample Kolmogorov-Smirnov test, with the
  statistic and p-value of ``scipy.stats.ks_2samp`` [ks-test].
  Above 10,000 rows the asymptotic p-value
  ``scipy.stats.kstwobign.sf(D * sqrt(n*m / (n+m)))`` is accepted too, and much cheaper [ks-large].
* Categorical feature: the chi-square test of homogeneity, that is
  ``scipy.stats.chi2_contingency`` on a 2 x k table of counts [chi2-test]; with one degree
  of freedom (two categories) its Yates correction may be on (scipy's default) or off.
  The two rows of the table are lined up by category [chi2-aligned].
  Categories seen only in the new window are columns of the table too [chi2-new-category].
  A category that no row of either sample has (an unused category of a pandas
  ``category`` column) is not a column of the table [chi2-unseen-category].
  A feature with one single category in both samples cannot differ: its statistic
  is 0 and its p-value 1, as ``chi2_contingency`` gives for a 2 x 1 table [chi2-one-category].
* PSI (population stability index) is reported for every feature:
  PSI = sum((new - ref) * ln(new / ref)), where new and ref are the shares of each sample in each bin [psi-formula].
  Numeric features use ``psi_bins`` bins cut at the quantiles of the reference, not of the new window [psi-reference-bins].
  The outer edges of those bins are -inf and +inf, so every new value falls in a bin [psi-outer-edges].
  Reference values may repeat (counts, a constant column), so quantiles may coincide: that must not
  stop the check, and a value equal to an edge may go in the bin on either side of it [psi-ties].
  Categorical features use one bin per category, new categories included [psi-categories].
  An empty bin gets a share of ``EPSILON`` before the log is taken [psi-epsilon].
* KL divergence KL(new || ref) = sum(new * ln(new / ref)), on the same bins as PSI [kl-direction].
* A feature has drifted when its p-value is strictly below ``threshold`` [threshold-strict].
* The dataset has drifted when the share of drifted features is at least ``drift_share`` [share-boundary].

Missing values (NaN) are left out of every test, in the reference and in the new window [missing-dropped].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd
from scipy import stats

EPSILON = 1e-4

Webhook = str | Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class FeatureDrift:
    """The drift result of one feature."""

    feature: str
    method: str  # "ks" for numeric features, "chi2" for categorical ones [method-name]
    statistic: float  # the KS statistic D, or the chi-square statistic
    p_value: float
    psi: float
    kl_divergence: float  # KL(new || ref)
    drifted: bool  # p_value < threshold
    n_missing: int = 0  # how many values of this column are missing in the new window [missing-counted]


@dataclass(frozen=True)
class DriftReport:
    """The drift result of one window of new data."""

    features: dict[str, FeatureDrift]
    threshold: float
    share_drifted: float  # drifted features / features compared [share-field]
    drifted: bool  # share_drifted >= drift_share
    n_rows: int = 0  # rows of the new window, rows with missing values included [n-rows]
    ignored_columns: list[str] = field(default_factory=list)  # in the window, not in the reference [ignored-columns]

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, result in self.features.items() if result.drifted]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form of the report: plain Python numbers, bools and strings [report-json]."""
        data = asdict(self)
        data["drifted_features"] = self.drifted_features
        return data


def is_categorical(column: pd.Series) -> bool:
    """Numbers are numeric features; anything else (text, bool, category) is categorical."""
    return not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


class DriftDetector:
    """Detect data drift of new windows against reference data.

    >>> detector = DriftDetector(reference_df)
    >>> report = detector.detect_drift(window_df, threshold=0.05)
    >>> report.drifted, report.drifted_features
    >>> detector.alert_if_drift(window_df, webhook="http://127.0.0.1:9000/alerts")
    """

    def __init__(
        self,
        reference_data: pd.DataFrame,
        *,
        categorical_features: list[str] | None = None,
        drift_share: float = 0.5,
        psi_bins: int = 10,
        webhook: Webhook | None = None,
    ):
        """Summarise ``reference_data`` once; every later window is compared with that summary [stats-once].

        ``categorical_features`` names the columns to treat as categorical, number columns included;
        None (the default) picks them by dtype [categorical-features].
        ``drift_share`` is the share of drifted features from which the dataset has drifted;
        it defaults to 0.5, as in Evidently [share-default].
        ``psi_bins`` is the number of PSI bins of a numeric feature; it defaults to 10 [psi-bins].
        ``webhook`` is where ``alert_if_drift`` sends alerts when it is not given one.
        Raises TypeError when ``reference_data`` is not a pandas DataFrame [reference-type].
        Raises ValueError when ``reference_data`` is empty [reference-empty].
        """
        if not isinstance(reference_data, pd.DataFrame):
            raise TypeError(
                f"reference_data should be a pandas DataFrame; got {type(reference_data).__name__}"
            )
        if reference_data.empty:
            raise ValueError("reference_data is empty: drift needs a reference to compare with")
        if categorical_features is None:
            categorical_features = [c for c in reference_data.columns if is_categorical(reference_data[c])]
        self.categorical_features = list(categorical_features)
        self.drift_share = drift_share
        self.psi_bins = psi_bins
        self.webhook = webhook
        self._in_drift_episode = False
        # The expensive part happens once: each new window is compared with these stats.
        self.reference_stats = self.compute_stats(reference_data)

    def compute_stats(self, data: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """Compute, once, everything `detect_drift` needs to know about the reference.

        Returns a dict with one entry per column of ``data``, keyed by column name [stats-keys].
        Each entry is a dict with at least ``kind`` ("numeric" or "categorical")
        and ``n``, the number of non-missing values [stats-kind].
        A numeric entry also holds ``mean`` and ``std`` (sample or population standard deviation) [stats-numeric].
        It may hold anything else the KS test and PSI need.
        A categorical entry holds ``counts``: the number of rows of each category [stats-counts].
        The extra key ``"__correlations__"`` holds the Pearson correlation matrix of the numeric
        columns, as a DataFrame (on its own, or under the key ``"matrix"``) [stats-correlations].
        """
        ### BEGIN SOLUTION
        result: dict[str, dict[str, Any]] = {}
        for name in data.columns:
            column = data[name].dropna()
            if column.empty:
                raise ValueError(f"reference column {name!r} has no values (all missing)")
            if name in self.categorical_features:
                counts = column.value_counts()
                counts = counts[counts > 0]
                result[name] = {"kind": "categorical", "n": int(column.size), "counts": counts}
                continue
            values = np.sort(column.to_numpy(dtype=float))
            inner_edges = np.unique(np.quantile(values, np.linspace(0, 1, self.psi_bins + 1))[1:-1])
            result[name] = {
                "kind": "numeric",
                "n": int(values.size),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "quantiles": np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95]),
                "sorted": values,
                "inner_edges": inner_edges,
                "bin_shares": _bin_shares(values, inner_edges),
            }
        numeric = [n for n, s in result.items() if s["kind"] == "numeric"]
        result["__correlations__"] = {"kind": "correlations", "matrix": data[numeric].corr()}
        return result
        ### END SOLUTION

    def detect_drift(self, new_data: pd.DataFrame, threshold: float = 0.05) -> DriftReport:
        """Compare ``new_data`` with the reference, feature by feature.

        Returns a report with one entry ``features[name]`` per reference column [report-features].
        Each entry has ``method``, ``statistic``, ``p_value``, ``psi``, ``kl_divergence``,
        ``drifted`` and ``n_missing`` [feature-fields].
        The report's ``drifted`` is the dataset-level verdict, and its ``threshold`` the threshold used [report-verdict].
        ``threshold`` defaults to 0.05 [threshold-default].
        Raises ValueError when ``threshold`` is not strictly between 0 and 1 [threshold-range].
        Raises ValueError, naming the columns, when ``new_data`` lacks a reference column [missing-column].
        Raises ValueError, naming the column, when a column of ``new_data`` has no values at all [empty-column].
        Raises ValueError, naming the column, when a column that is numeric in the reference
        holds values that are not numbers in ``new_data`` (text, objects) [numeric-mismatch].
        Extra columns of ``new_data`` get no entry in ``features`` [extra-ignored].
        """
        ### BEGIN SOLUTION
        if not 0 < threshold < 1:
            raise ValueError(f"threshold should be a p-value between 0 and 1; got {threshold}")
        reference_columns = [n for n in self.reference_stats if n != "__correlations__"]
        missing = [n for n in reference_columns if n not in new_data.columns]
        if missing:
            raise ValueError(f"new data is missing columns the reference has: {missing}")
        features = {}
        for name in reference_columns:
            ref = self.reference_stats[name]
            column = new_data[name]
            n_missing = int(column.isna().sum())
            column = column.dropna()
            if column.empty:
                raise ValueError(f"column {name!r} has no values in the new data (all missing)")
            if ref["kind"] == "numeric":
                result = _numeric_drift(name, ref, column, threshold)
            else:
                result = _categorical_drift(name, ref, column, threshold)
            features[name] = FeatureDrift(**result, n_missing=n_missing)
        share = sum(f.drifted for f in features.values()) / len(features)
        return DriftReport(
            features=features,
            threshold=threshold,
            share_drifted=share,
            drifted=share >= self.drift_share,
            n_rows=len(new_data),
            ignored_columns=[c for c in new_data.columns if c not in self.reference_stats],
        )
        ### END SOLUTION

    def alert_if_drift(
        self, new_data: pd.DataFrame, webhook: Webhook | None = None, threshold: float = 0.05
    ) -> bool:
        """Send one alert per drift episode; return True when this call sent one, else False [alert-return].

        An episode starts with the first window whose report says ``drifted``: that call sends the alert [episode-start].
        The next drifted windows belong to the same episode and send nothing [episode-once].
        The episode ends with the next window that has not drifted; a later drifted window starts a new one [episode-end].
        The alert is a JSON object POSTed to ``webhook`` when it is a URL [alert-post].
        When ``webhook`` is a callable, it is called with the alert as a dict [alert-callable].
        The alert has at least ``"drifted_features"``: the names of the drifted features [alert-payload].
        ``threshold`` is the threshold ``detect_drift`` is called with [alert-threshold].
        ``webhook`` defaults to the one given to the constructor [webhook-default].
        Raises ValueError when no webhook was given, neither here nor to the constructor [webhook-missing].
        Raises an error when the alert cannot be delivered: the receiver answers with an error status,
        cannot be reached, or the callable raises [alert-failure].
        An alert that was not delivered has not started an episode, so the next drifted window tries again [alert-retry].
        """
        ### BEGIN SOLUTION
        target = webhook if webhook is not None else self.webhook
        if target is None:
            raise ValueError("no webhook: pass webhook=URL or a callable, here or to DriftDetector")
        report = self.detect_drift(new_data, threshold)
        if not report.drifted:
            self._in_drift_episode = False
            return False
        if self._in_drift_episode:
            return False
        payload = {
            "alert": "data_drift",
            "drifted_features": report.drifted_features,
            "share_drifted": report.share_drifted,
            "threshold": threshold,
            "n_rows": report.n_rows,
            "features": {
                name: {k: v for k, v in asdict(report.features[name]).items() if k != "feature"}
                for name in report.drifted_features
            },
        }
        if callable(target):
            target(payload)
        else:
            httpx.post(target, json=payload, timeout=10).raise_for_status()
        self._in_drift_episode = True
        return True
        ### END SOLUTION


### BEGIN SOLUTION
def _bin_shares(sorted_values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Share of values in each bin [edge_i, edge_i+1), outer edges -inf and +inf."""
    cuts = np.searchsorted(sorted_values, inner_edges, side="left")
    counts = np.diff(np.concatenate(([0], cuts, [sorted_values.size])))
    return counts / sorted_values.size


def _psi_and_kl(ref_shares: np.ndarray, new_shares: np.ndarray) -> tuple[float, float]:
    ref = np.where(ref_shares == 0, EPSILON, ref_shares)
    new = np.where(new_shares == 0, EPSILON, new_shares)
    log_ratio = np.log(new / ref)
    return float(np.sum((new - ref) * log_ratio)), float(np.sum(new * log_ratio))


def _cdf_gaps(ref_sorted, values, new_lt, new_le, n: int, m: int):
    """F_ref - F_new just before each value, F_new - F_ref at it, and the reference counts behind them."""
    ref_lt = np.searchsorted(ref_sorted, values, side="left")
    ref_le = np.searchsorted(ref_sorted, values, side="right")
    return ref_lt / n - new_lt / m, new_le / m - ref_le / n, ref_lt, ref_le


def _ks_2samp_sorted(ref_sorted: np.ndarray, new_sorted: np.ndarray) -> tuple[float, float]:
    """Two-sided KS statistic and p-value, as scipy's ks_2samp, from a pre-sorted reference.

    Samples of up to 10,000 values use scipy itself (its exact p-value). Above that, the
    supremum of |F_ref - F_new| is found from the new sample's distinct
    values alone: between two of them F_new is flat, so F_ref - F_new is largest
    just before the next new value and smallest at the current one. Each such value
    costs two binary searches in the reference, so most of them are skipped: a first
    pass looks at every 32nd distinct value (and the last); between two of those both
    CDFs only go up, which bounds every gap in between by counts at the two ends, and
    only the stretches whose bound beats the largest gap seen so far get a second pass
    (a few percent of them on real data). The result is exactly the full pass's.
    """
    n, m = ref_sorted.size, new_sorted.size
    if max(n, m) <= 10_000:  # scipy's exact p-value; small samples are cheap anyway
        result = stats.ks_2samp(ref_sorted, new_sorted)
        return float(result.statistic), float(result.pvalue)
    starts = np.flatnonzero(np.r_[True, new_sorted[1:] != new_sorted[:-1]])  # distinct values
    values = new_sorted[starts]
    new_lt = starts  # new values below each distinct value
    new_le = np.r_[starts[1:], m]  # new values up to and including it
    last, step = values.size - 1, 32
    probes = np.r_[np.arange(0, last, step), last]
    ref_above, new_above, ref_lt, ref_le = _cdf_gaps(
        ref_sorted, values[probes], new_lt[probes], new_le[probes], n, m)
    d = float(max(ref_above.max(), new_above.max(), 0.0))
    # For a value strictly between probes a and b: F_ref(x-) <= F_ref(b-) and F_new(x-) >= F_new(a),
    # F_new(x) <= F_new(b-) and F_ref(x) >= F_ref(a). So its gaps are at most these bounds.
    bound = np.maximum(ref_lt[1:] / n - new_le[probes[:-1]] / m,
                       new_lt[probes[1:]] / m - ref_le[:-1] / n)
    open_starts = probes[:-1][bound > d]
    inside = (open_starts[:, None] + np.arange(1, step)).ravel()
    inside = inside[inside < last]
    ref_above, new_above, _, _ = _cdf_gaps(
        ref_sorted, values[inside], new_lt[inside], new_le[inside], n, m)
    d = float(max(d, ref_above.max(initial=0.0), new_above.max(initial=0.0)))
    # The asymptotic Kolmogorov distribution: within 1% of ks_2samp's p-value near usual
    # thresholds at these sizes, and about 1000x cheaper than its finite-n `kstwo.sf`.
    p = float(stats.kstwobign.sf(d * np.sqrt(n * m / (n + m))))
    return d, p


def _numeric_drift(name: str, ref: Mapping[str, Any], column: pd.Series, threshold: float):
    try:
        values = np.sort(column.to_numpy(dtype=float))
    except (TypeError, ValueError):
        raise ValueError(f"column {name!r} is numeric in the reference but not in the new data") from None
    statistic, p_value = _ks_2samp_sorted(ref["sorted"], values)
    psi, kl = _psi_and_kl(ref["bin_shares"], _bin_shares(values, ref["inner_edges"]))
    return dict(feature=name, method="ks", statistic=statistic, p_value=p_value,
                psi=psi, kl_divergence=kl, drifted=p_value < threshold)


def _categorical_drift(name: str, ref: Mapping[str, Any], column: pd.Series, threshold: float):
    new_counts = column.value_counts()
    categories = ref["counts"].index.union(new_counts.index, sort=False)
    table = np.vstack([
        ref["counts"].reindex(categories, fill_value=0).to_numpy(dtype=float),
        new_counts.reindex(categories, fill_value=0).to_numpy(dtype=float),
    ])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:  # one category in both samples: nothing can differ
        statistic, p_value = 0.0, 1.0
    else:
        result = stats.chi2_contingency(table)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    shares = table / table.sum(axis=1, keepdims=True)
    psi, kl = _psi_and_kl(shares[0], shares[1])
    return dict(feature=name, method="chi2", statistic=statistic, p_value=p_value,
                psi=psi, kl_divergence=kl, drifted=p_value < threshold)
### END SOLUTION
