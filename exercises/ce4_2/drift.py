"""CE4.2 — Data drift detection.

Compare a window of new (production) data with the reference data the model
was trained on, feature by feature, and raise an alert when it has drifted.

The conventions this exercise asks for (the graders check them against scipy
and an independent formula):

* numeric feature: two-sample Kolmogorov-Smirnov test, two-sided
  (the statistic and p-value of ``scipy.stats.ks_2samp``; above 10,000 rows the
  asymptotic p-value ``scipy.stats.kstwobign.sf(D * sqrt(n*m / (n+m)))`` is as good,
  and much cheaper);
* categorical feature: chi-square test of homogeneity on the counts of both
  samples, categories lined up, categories new in the window included
  (``scipy.stats.chi2_contingency`` on a 2 x k table);
* PSI (population stability index), reported for every feature: numeric
  features use ``psi_bins`` bins cut at the reference's quantiles, outer edges
  -inf and +inf; categorical features use one bin per category. Empty bins get
  a share of ``EPSILON`` before the log is taken.
  PSI = sum((new - ref) * ln(new / ref));
* KL divergence KL(new || ref) = sum(new * ln(new / ref)) on the same bins;
* a feature has drifted when its test's p-value is below ``threshold``; the
  dataset has drifted when the share of drifted features is at least
  ``drift_share`` (0.5 by default, as in Evidently).

Missing values (NaN) are left out of every test and counted in the report.
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
    method: str  # "ks" for numeric features, "chi2" for categorical ones
    statistic: float  # the KS statistic D, or the chi-square statistic
    p_value: float
    psi: float
    kl_divergence: float  # KL(new || ref)
    drifted: bool  # p_value < threshold
    n_missing: int = 0  # missing values in the new window, left out of the test


@dataclass(frozen=True)
class DriftReport:
    """The drift result of one window of new data."""

    features: dict[str, FeatureDrift]
    threshold: float
    share_drifted: float  # drifted features / features compared
    drifted: bool  # share_drifted >= drift_share
    n_rows: int = 0
    ignored_columns: list[str] = field(default_factory=list)  # in the window, not in the reference

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, result in self.features.items() if result.drifted]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form of the report."""
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

        Returns a dict keyed by column name. Each value is a dict with at least
        ``kind`` ("numeric" or "categorical") and ``n`` (non-missing values);
        numeric columns also hold ``mean``, ``std`` and what the KS test and
        PSI need; categorical columns hold the category counts. The key
        ``"__correlations__"`` holds the numeric columns' correlation matrix.
        """
        raise NotImplementedError("YOUR CODE HERE")

    def detect_drift(self, new_data: pd.DataFrame, threshold: float = 0.05) -> DriftReport:
        """Compare ``new_data`` with the reference, feature by feature.

        Returns a report whose ``features[name]`` has ``method``, ``statistic``,
        ``p_value``, ``psi``, ``kl_divergence`` and ``drifted``, and whose
        ``share_drifted`` and ``drifted`` give the dataset-level verdict.
        Raises ValueError, naming the columns, when ``new_data`` lacks a
        reference column or a column has no values at all. Extra columns are
        ignored and listed in ``ignored_columns``.
        """
        raise NotImplementedError("YOUR CODE HERE")

    def alert_if_drift(
        self, new_data: pd.DataFrame, webhook: Webhook | None = None, threshold: float = 0.05
    ) -> bool:
        """Send one alert per drift episode; return True when this call sent one.

        An episode starts with the first window whose report says ``drifted``
        and ends with the next window that does not. The alert is a JSON object
        POSTed to ``webhook`` (a URL), or passed to it (a callable), with at
        least ``"drifted_features"``: the names of the drifted features.
        ``webhook`` defaults to the one given to the constructor. An alert that
        cannot be delivered raises, and is tried again on the next call.
        """
        raise NotImplementedError("YOUR CODE HERE")


# YOUR CODE HERE
