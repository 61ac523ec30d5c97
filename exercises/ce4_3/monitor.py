"""CE4.3 — Model performance monitoring over time windows.

A deployed model is judged by what it gets right *now*, not by its test score at
training time. ``ModelMonitor`` keeps every prediction in a database (SQLite by
default, PostgreSQL when given a URL), joins the true labels when they arrive
later, computes the metrics of any time window, and tells whether the model has
become worse than it was.

The conventions this exercise asks for (the graders check them against pandas,
scikit-learn and scipy, computed from the traffic they send):

* Times are timezone-aware datetimes. A prediction belongs to the time it was
  made: a label that arrives later does not move it to another window.
* A window is written as a positive whole number and a unit: ``"45s"``, ``"30m"``,
  ``"6h"``, ``"1d"``, ``"2w"`` (seconds, minutes, hours, days, weeks), or given as a
  ``datetime.timedelta``.
* Metrics are computed over the *labelled* predictions of a window; the prediction
  and confidence distributions over *all* its predictions.
* Degradation is judged with a one-sided Fisher's exact test, and never on fewer
  than ``min_samples`` labelled predictions.

>>> monitor = ModelMonitor("monitoring/predictions.db")
>>> pid = monitor.track_prediction({"age": 42, "plan": "pro"}, "churn", confidence=0.81)
>>> monitor.record_actual(pid, "stay")           # days later, when the truth is known
>>> monitor.compute_metrics("1d")["accuracy"]
>>> monitor.detect_degradation(window="1d", baseline="7d")["reason"]
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from scipy import stats
from sklearn.metrics import precision_recall_fscore_support

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_window(window: str | timedelta) -> timedelta:
    """The length of a window.

    ``window`` is a positive whole number followed by one unit: ``s`` seconds, ``m`` minutes,
    ``h`` hours, ``d`` days, ``w`` weeks (``"90s"``, ``"30m"``, ``"6h"``, ``"1d"``, ``"2w"``),
    or a ``datetime.timedelta`` [window-syntax].
    Raises ValueError, naming the value, for anything else: no unit, another unit (``"1y"``),
    a fraction, zero, a negative length, text around it [window-invalid].
    """
    raise NotImplementedError("YOUR CODE HERE")


class ModelMonitor:
    """Track predictions and labels in a database; compute windowed metrics; detect degradation."""

    def __init__(
        self,
        database: str | Path = "monitor.db",
        *,
        clock: Callable[[], datetime] | None = None,
        min_samples: int = 100,
        alpha: float = 0.05,
        calibration_bins: int = 10,
        positive_label: Any = None,
    ):
        """Open (or create) the monitoring database.

        ``database`` is the path of an SQLite file, created (with its folder) when missing [sqlite-default].
        A ``postgresql://`` or ``postgres://`` URL keeps the predictions in that PostgreSQL database
        instead, in tables the monitor creates when they are missing [postgres-url].
        Whatever is tracked is kept: a new ModelMonitor on the same database, in this process or
        another one, sees every prediction and label tracked before [durable].
        ``clock`` is called, without arguments, whenever the monitor needs the current time; it returns
        a timezone-aware datetime. It defaults to the current UTC time [clock].
        ``min_samples`` (default 100), ``alpha`` (default 0.05), ``calibration_bins`` (default 10) and
        ``positive_label`` (default None) are described where they are used.
        Raises ConnectionError when the PostgreSQL server cannot be reached; the message names its host
        and port and never shows the password [db-unreachable].
        A connection the server has closed (a database restart) is opened again by the next call,
        which then works [reconnect].
        """
        raise NotImplementedError("YOUR CODE HERE")

    raise NotImplementedError("YOUR CODE HERE")

    def close(self) -> None:
        """Close the database connection; closing twice is harmless [close]."""
        raise NotImplementedError("YOUR CODE HERE")

    def track_prediction(
        self,
        input_features: Mapping[str, Any],
        prediction: Any,
        actual: Any = None,
        *,
        confidence: float | None = None,
        timestamp: datetime | None = None,
        prediction_id: str | None = None,
    ) -> str:
        """Store one prediction and return its id.

        The prediction is in the database when the call returns [track-stored].
        Returns the prediction id, a string unique in the database [id-unique].
        ``prediction_id`` chooses the id (a request id, say); an id already in the database raises
        ValueError [id-given].
        ``timestamp`` is when the prediction was made; it defaults to the clock's current time [timestamp-default].
        A naive datetime (without a timezone) raises ValueError [timestamp-aware].
        ``confidence`` is the model's probability for ``prediction``, from 0 to 1 inclusive; None
        when the model gives none. Outside [0, 1], NaN included, raises ValueError [confidence-range].
        ``actual`` is the true label when it is already known, as if ``record_actual`` were called at once [actual-now].
        ``input_features`` is a mapping of JSON values (numbers, text, bools, None, lists); numpy numbers
        and arrays are accepted (an array comes back as a list). ``prediction`` and ``actual`` are labels:
        ints, strings or bools. ``get_prediction`` gives all of them back with their types
        (1 stays 1, "1" stays "1") [types-kept].
        A value that JSON cannot hold (an object, a set) raises TypeError, and nothing is stored [json-only].
        """
        raise NotImplementedError("YOUR CODE HERE")

    def record_actual(self, prediction_id: str, actual: Any) -> None:
        """Join the true label that arrived later to the prediction with this id [label-join].

        The prediction keeps its own time: windows count predictions by when they were made,
        not by when their label arrived [prediction-time].
        A second label for the same id replaces the first [label-replace].
        Raises KeyError, naming the id, when no prediction has this id [label-unknown].
        """
        raise NotImplementedError("YOUR CODE HERE")

    def get_prediction(self, prediction_id: str) -> dict[str, Any]:
        """One stored prediction, as a dict [get-prediction].

        Keys: ``prediction_id``, ``timestamp`` (timezone-aware, the same instant as tracked),
        ``input_features``, ``prediction``, ``actual`` (None until known) and ``confidence`` (or None).
        Raises KeyError, naming the id, when no prediction has this id [get-unknown].
        """
        raise NotImplementedError("YOUR CODE HERE")

    def compute_metrics(self, window: str | timedelta = "1d", *, end: datetime | None = None) -> dict[str, Any]:
        """The model's performance over one time window.

        The window holds the predictions made after ``end - window`` and at or before ``end``:
        the start is excluded, the end included [window-bounds].
        ``end`` defaults to the clock's current time [end-default].
        Returns a dict with these keys [metrics-keys]:

        * ``n_predictions``: the predictions in the window; ``n_labelled``: those with a label [counts].
        * ``accuracy``: the share of labelled predictions equal to their label [accuracy].
        * ``precision``, ``recall``, ``f1``: with ``positive_label=None`` (the default), the macro average
          over every label that is a prediction or a label of the window's labelled predictions, a label
          never predicted counting 0 (scikit-learn's ``average="macro"``, ``zero_division=0``) [macro-average].
          With ``positive_label`` set, the metrics of that label against all the others: for 0/1 labels,
          scikit-learn's ``average="binary"`` with ``pos_label=positive_label``, ``zero_division=0`` [binary-average].
        * ``calibration_error``: the expected calibration error (ECE) of the labelled predictions that
          have a confidence: sum over bins of (n_bin / n) * |accuracy_bin - mean confidence_bin| [ece].
          The bins are ``calibration_bins`` equal-width bins [k/B, (k+1)/B): a confidence on an edge
          belongs to the bin above it, and 1.0 to the last bin [ece-bins]. (An edge that floating point
          cannot hold exactly, such as 0.3, may go either way, as in ``numpy.histogram``.)
        * ``prediction_distribution``: {label: share of the window's predictions}, over all of them,
          labelled or not [prediction-distribution].
        * ``confidence_histogram``: a list of ``calibration_bins`` counts of the window's confidences
          on those bins (as ``numpy.histogram(c, bins=B, range=(0, 1))``); ``mean_confidence``: their
          mean [confidence-distribution].

        Without labelled predictions, accuracy, precision, recall, f1 and calibration_error are None,
        not 0 [no-labels]. An empty window has zero counts, an empty ``prediction_distribution``,
        a histogram of zeros and a ``mean_confidence`` of None [empty-window].
        ``window`` follows ``parse_window``; an invalid one raises ValueError [window-checked].
        """
        raise NotImplementedError("YOUR CODE HERE")

    raise NotImplementedError("YOUR CODE HERE")

    def detect_degradation(
        self, window: str | timedelta = "1d", baseline: str | timedelta = "7d", *, end: datetime | None = None
    ) -> dict[str, Any]:
        """Has the model become worse? Compare a recent window with the baseline period before it.

        The window is the one of ``compute_metrics(window, end=end)``; the baseline is the
        ``baseline`` span just before it, from ``end - window - baseline`` (excluded) to
        ``end - window`` (included) [baseline-span].
        Both windows are judged by their labelled predictions, correct or not. The test is the
        one-sided Fisher's exact test on the 2 x 2 table [[baseline correct, baseline wrong],
        [window correct, window wrong]], asking whether the window's accuracy is lower:
        ``scipy.stats.fisher_exact(table, alternative="greater")`` [fisher-test].
        A window that does better than the baseline is never a degradation [one-sided].
        The model has degraded when that p-value is strictly below ``alpha`` (default 0.05) [alpha-strict].
        With fewer than ``min_samples`` (default 100) labelled predictions in the window or in the
        baseline, there is no test and no alarm: ``degraded`` is False, ``p_value`` None,
        ``status`` "insufficient_data" [min-samples]; ``min_samples`` itself is enough [min-samples-boundary].
        Returns a dict with ``degraded`` (bool), ``status`` ("degraded", "ok" or "insufficient_data"),
        ``reason`` (one sentence saying why), ``p_value``, ``window_accuracy``, ``baseline_accuracy``
        (None without labels), ``n_window`` and ``n_baseline`` (labelled predictions) [degradation-fields].
        When data is missing, the reason names the number of labelled predictions found and the
        minimum needed [reason-names-counts].
        """
        raise NotImplementedError("YOUR CODE HERE")


# YOUR CODE HERE
