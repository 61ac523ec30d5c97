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
        raise NotImplementedError("YOUR CODE HERE")

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
        raise NotImplementedError("YOUR CODE HERE")

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
        raise NotImplementedError("YOUR CODE HERE")


# YOUR CODE HERE
