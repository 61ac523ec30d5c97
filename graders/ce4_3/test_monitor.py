"""Graders for CE4.3 — model performance monitoring over time windows.

The graders send time-stamped traffic with a known degradation point: fourteen days of
binary predictions, one every 10 minutes, 90% correct until day 10 and 60% correct after
it. Which predictions are wrong, which are labelled (and when) is fixed by their index,
not drawn at random; only the confidences come from a seeded generator, and they decide
no verdict. Every expected value is computed here, from the traffic the grader sent, with
pandas, scikit-learn and scipy — never from the learner's objects. Time is the grader's:
the monitor gets a clock the grader sets, and explicit timestamps.
"""

from __future__ import annotations

import math
import sqlite3
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from workbook.checks import assert_close, field, learner_error
from workbook.sealed import run_learner_program
from workbook.services.base import free_port

T0 = datetime(2024, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)
DAYS = 14
CHANGE = T0 + timedelta(days=10)  # predictions made after this instant are worse
DAY = timedelta(days=1)


# -- the traffic ------------------------------------------------------------------------------


class Clock:
    """The monitor's clock: the grader decides what time it is."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def traffic(days: int = DAYS, *, seed: int = 0) -> pd.DataFrame:
    """One binary prediction every 10 minutes from T0 + 10 min; 10% wrong before CHANGE, 40% after.

    ``label_at_track``: the label is passed to track_prediction; ``labelled``: it arrives
    later through record_actual (after all the traffic); neither: it never arrives.
    """
    i = np.arange(days * 144)
    ts = [T0 + STEP * (k + 1) for k in i]
    after = np.array([t > CHANGE for t in ts])
    actual = (i * 7 % 11 < 5).astype(int)
    wrong = np.where(after, i % 10 < 4, i % 10 == 3)
    return pd.DataFrame({
        "id": [f"p{k:05d}" for k in i],
        "ts": ts,
        "prediction": np.where(wrong, 1 - actual, actual),
        "actual": actual,
        "confidence": np.random.default_rng(seed).uniform(0.5, 1.0, i.size),
        "labelled": i % 13 != 0,
        "label_at_track": (i % 13 != 0) & (i % 5 == 0),
    })


def send(monitor, frame: pd.DataFrame) -> None:
    """Track every prediction of ``frame`` with its timestamp, then join the late labels."""
    for row in frame.itertuples():
        monitor.track_prediction(
            {"x": float(row.confidence), "hour": row.ts.hour}, int(row.prediction),
            int(row.actual) if row.label_at_track else None,
            confidence=float(row.confidence), timestamp=row.ts, prediction_id=row.id,
        )
    for row in frame[frame.labelled & ~frame.label_at_track].itertuples():
        monitor.record_actual(row.id, int(row.actual))


def in_window(frame: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    return frame[(frame.ts > start) & (frame.ts <= end)]


def ece(confidence, correct, bins: int = 10, *, right: bool = False, top: int | None = None) -> float:
    """Expected calibration error on [k/B, (k+1)/B) bins, 1.0 in the last one, written out with pandas.

    ``right=True`` gives (k/B, (k+1)/B] bins instead, and ``top=bins`` a bin of its own for 1.0:
    the conventions this exercise does not ask for, to show a case tells them apart.
    """
    data = pd.DataFrame({"c": np.asarray(confidence, float), "ok": np.asarray(correct, float)})
    edges = np.linspace(0, 1, bins + 1)
    inner = edges[1:] if top is not None else edges[1:-1]
    data["bin"] = np.clip(np.digitize(data.c, inner, right=right), 0, top if top is not None else bins - 1)
    per_bin = data.groupby("bin").agg(n=("c", "size"), conf=("c", "mean"), acc=("ok", "mean"))
    return float((per_bin.n / len(data) * (per_bin.acc - per_bin.conf).abs()).sum())


def reference_metrics(frame: pd.DataFrame, start: datetime, end: datetime, *, positive=None) -> dict:
    window = in_window(frame, start, end)
    labelled = window[window.labelled]
    y, p = labelled.actual.tolist(), labelled.prediction.tolist()
    if positive is None:
        labels = sorted(set(y) | set(p))
        prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=labels, average="macro", zero_division=0)
    else:
        prec, rec, f1, _ = precision_recall_fscore_support(y, p, pos_label=positive, average="binary",
                                                           zero_division=0)
    return {
        "n_predictions": len(window), "n_labelled": len(labelled),
        "accuracy": accuracy_score(y, p), "precision": prec, "recall": rec, "f1": f1,
        "calibration_error": ece(labelled.confidence, labelled.actual == labelled.prediction),
    }


def reference_test(frame: pd.DataFrame, end: datetime, window: timedelta, baseline: timedelta,
                   min_samples: int = 100):
    """(p-value, table) of the one-sided Fisher test, or None below the minimum sample size."""
    cur = in_window(frame, end - window, end)
    base = in_window(frame, end - window - baseline, end - window)
    cur, base = cur[cur.labelled], base[base.labelled]
    if min(len(cur), len(base)) < min_samples:
        return None
    w_ok = int((cur.actual == cur.prediction).sum())
    b_ok = int((base.actual == base.prediction).sum())
    table = [[b_ok, len(base) - b_ok], [w_ok, len(cur) - w_ok]]
    return stats.fisher_exact(table, alternative="greater").pvalue, table


# -- access to the learner's results ---------------------------------------------------------


def get(result, key: str, what: str):
    __tracebackhide__ = True
    return field(result, key, what=what)


def assert_metric(result, key: str, expected, what: str) -> None:
    __tracebackhide__ = True
    got = get(result, key, what)
    if expected is None:
        assert got is None, f"{what}['{key}'] should be None; got {got!r}"
        return
    assert got is not None, f"{what}['{key}'] should be {expected:.6g}; got None"
    assert_close(got, float(expected), what=f"{what}['{key}']")


def assert_metrics(result, expected: dict, what: str) -> None:
    __tracebackhide__ = True
    for key, value in expected.items():
        if key.startswith("n_"):
            got = get(result, key, what)
            assert got == value, f"{what}['{key}'] should be {value}; got {got!r}"
        else:
            assert_metric(result, key, value, what)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def contained_working_folder(tmp_path_factory):
    """Whatever the learner's code writes to its working folder stays in a temporary one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("workdir"))
        yield


@pytest.fixture(scope="module")
def mod(load_module):
    return load_module("monitor")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return traffic()


@pytest.fixture(scope="module")
def world(mod, frame, tmp_path_factory):
    """One monitor (SQLite) holding the whole 14-day traffic; checks only read it."""
    clock = Clock(T0 + DAYS * DAY)
    path = tmp_path_factory.mktemp("world") / "monitor.db"
    monitor = mod.ModelMonitor(str(path), clock=clock)
    send(monitor, frame)
    return monitor, clock, path


@pytest.fixture
def fresh(mod, tmp_path):
    """A factory of empty monitors, each on its own SQLite file, with a grader's clock."""

    def make(now: datetime = T0, **kwargs):
        clock = Clock(now)
        return mod.ModelMonitor(str(tmp_path / f"m{uuid.uuid4().hex[:8]}.db"), clock=clock, **kwargs), clock

    return make


@pytest.fixture
def database(postgres):
    """A database of its own on the shared PostgreSQL server (dropped afterwards)."""
    name = f"ce4_3_{uuid.uuid4().hex[:12]}"
    with postgres.connect(autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = postgres.dsn.rsplit("/", 1)[0] + f"/{name}"
    yield dsn, name
    with postgres.connect(autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- windowed metrics ---------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.covers("metrics-keys", "counts", "accuracy", "macro-average", "ece", "label-join")
def test_windowed_metrics_match_sklearn(world, frame):
    """Accuracy, precision, recall, F1 and ECE of several windows equal a scikit-learn/pandas reference."""
    monitor, clock, _ = world
    for end, span, text in [(T0 + 3 * DAY, DAY, "1d"), (CHANGE + 2 * DAY, DAY, "1d"),
                            (CHANGE + timedelta(hours=7), timedelta(hours=12), "12h"),
                            (T0 + DAYS * DAY, 7 * DAY, "7d")]:
        what = f"compute_metrics({text!r}, end={end:%Y-%m-%d %H:%M})"
        assert_metrics(monitor.compute_metrics(text, end=end), reference_metrics(frame, end - span, end), what)


@pytest.mark.points(2)
@pytest.mark.covers("window-bounds")
def test_window_excludes_its_start_and_includes_its_end(fresh):
    """A window holds what came after its start (not at it) and up to its end (at it too)."""
    monitor, _ = fresh()
    end = T0 + DAY
    ms = timedelta(milliseconds=1)
    for label, when in [("at start", end - DAY), ("after start", end - DAY + ms), ("at end", end),
                        ("after end", end + ms), ("before start", end - DAY - ms)]:
        monitor.track_prediction({"x": 1}, label, timestamp=when)
    result = monitor.compute_metrics("1d", end=end)
    got = dict(get(result, "prediction_distribution", "compute_metrics('1d')"))
    assert got == {"after start": 0.5, "at end": 0.5}, (
        "a 1d window ending at `end` should hold the predictions made after end - 1d and at or before end "
        f"('after start' and 'at end', half each); got the distribution {got}"
    )
    # The same instants written in other time zones are the same instants.
    east, west = timezone(timedelta(hours=5)), timezone(timedelta(hours=-7))
    monitor, _ = fresh()
    for label, when in [("at start", end - DAY), ("after start", end - DAY + ms), ("at end", end),
                        ("after end", end + ms), ("before start", end - DAY - ms)]:
        monitor.track_prediction({"x": 1}, label, timestamp=when.astimezone(east))
    got = dict(get(monitor.compute_metrics("1d", end=end.astimezone(west)), "prediction_distribution",
                   "compute_metrics('1d') with times in UTC+5 and an end in UTC-7"))
    assert got == {"after start": 0.5, "at end": 0.5}, (
        "times in other time zones are the same instants: the window should hold 'after start' and 'at end' "
        f"when the predictions are in UTC+5 and `end` in UTC-7; got the distribution {got}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("end-default", "clock")
def test_window_ends_at_the_clocks_time(world, frame):
    """Without ``end``, the window ends at the time the monitor's clock gives."""
    monitor, clock, _ = world
    clock.now = CHANGE + timedelta(hours=5)
    expected = reference_metrics(frame, clock.now - DAY, clock.now)
    assert_metrics(monitor.compute_metrics("1d"), expected, "compute_metrics('1d') at the clock's time")
    clock.now = T0 + DAYS * DAY


@pytest.mark.points(2)
@pytest.mark.covers("window-syntax")
def test_every_window_unit(world, frame):
    """Seconds, minutes, hours, days, weeks and a timedelta select the right predictions."""
    monitor, _, _ = world
    end = CHANGE + timedelta(hours=3)
    for text, span in [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)),
                       ("6h", timedelta(hours=6)), ("2d", 2 * DAY), ("1w", 7 * DAY),
                       (timedelta(hours=5), timedelta(hours=5))]:
        expected = len(in_window(frame, end - span, end))
        got = get(monitor.compute_metrics(text, end=end), "n_predictions", f"compute_metrics({text!r})")
        assert got == expected, f"compute_metrics({text!r}) should count {expected} predictions; got {got!r}"


@pytest.mark.points(1)
@pytest.mark.covers("window-invalid", "window-checked")
@pytest.mark.parametrize("window", ["1y", "0d", "00d", "-1d", "1.5h", "d", "", "1 d", "1d ago", "in 1d", "1d\n",
                                    timedelta(hours=-1), 5])
def test_invalid_windows_are_refused(world, window):
    """A window that is not a positive whole number and a unit raises ValueError naming it."""
    monitor, _, _ = world
    with learner_error(ValueError, what=f"compute_metrics({window!r})") as caught:
        monitor.compute_metrics(window)
    message = str(caught.value)
    if window.strip() if isinstance(window, str) else True:
        assert str(window).strip() in message or repr(window) in message, (
            f"the ValueError for compute_metrics({window!r}) should name the value; got {message!r}")


@pytest.mark.points(2)
@pytest.mark.covers("prediction-distribution", "confidence-distribution")
def test_prediction_and_confidence_distributions(world, frame):
    """Prediction shares and confidence histogram count every prediction, labelled or not."""
    monitor, _, _ = world
    end = CHANGE + 3 * DAY
    window = in_window(frame, end - DAY, end)
    result = monitor.compute_metrics("1d", end=end)
    got = {int(k): v for k, v in dict(get(result, "prediction_distribution", "compute_metrics")).items()}
    expected = window.prediction.value_counts(normalize=True).to_dict()
    assert set(got) == set(expected), f"prediction_distribution should have labels {sorted(expected)}; got {got}"
    for label, share in expected.items():
        assert_close(got[label], share, what=f"prediction_distribution[{label}]")
    histogram = [int(c) for c in get(result, "confidence_histogram", "compute_metrics")]
    counts = np.histogram(window.confidence, bins=10, range=(0, 1))[0].tolist()
    assert histogram == counts, f"confidence_histogram should be {counts} (numpy.histogram); got {histogram}"
    assert_metric(result, "mean_confidence", window.confidence.mean(), "compute_metrics")


@pytest.mark.points(1)
@pytest.mark.covers("ece-bins", "ece", "confidence-distribution")
def test_confidence_on_a_bin_edge_belongs_to_the_bin_above(fresh):
    """ECE bins are [k/B, (k+1)/B): 0.5 sits with 0.55, not with 0.45; 1.0 is in the last bin."""
    monitor, _ = fresh(T0 + DAY)
    cases = [(0.5, True), (0.55, True), (0.45, False), (0.45, False), (1.0, False), (0.92, True)]
    for k, (confidence, correct) in enumerate(cases):
        monitor.track_prediction({"k": k}, 1, 1 if correct else 0, confidence=confidence,
                                 timestamp=T0 + timedelta(hours=k + 1))
    conf, ok = [c for c, _ in cases], [o for _, o in cases]
    expected = ece(conf, ok)
    for other in (ece(conf, ok, right=True), ece(conf, ok, top=10)):
        assert not math.isclose(expected, other)  # the case tells the conventions apart
    what = "compute_metrics with confidences 0.5, 0.55, 0.45, 0.45, 1.0, 0.92"
    result = monitor.compute_metrics("1d")
    assert_metric(result, "calibration_error", expected, what)
    histogram = [int(c) for c in get(result, "confidence_histogram", what)]
    assert histogram == [0, 0, 0, 0, 2, 2, 0, 0, 0, 2], (
        f"{what}: confidence_histogram should be [0, 0, 0, 0, 2, 2, 0, 0, 0, 2] (0.5 with 0.55, 1.0 in the "
        f"last bin); got {histogram}"
    )
    # calibration_bins=4, and two labelled predictions without a confidence: they are not in n.
    monitor, _ = fresh(T0 + DAY, calibration_bins=4)
    cases = [(0.1, False), (0.2, True), (0.35, True), (0.4, False), (0.6, True), (0.7, True), (0.8, False),
             (0.95, True), (None, True), (None, False)]
    for k, (confidence, correct) in enumerate(cases):
        monitor.track_prediction({"k": k}, 1, 1 if correct else 0, confidence=confidence,
                                 timestamp=T0 + timedelta(hours=k + 1))
    conf, ok = [c for c, _ in cases if c is not None], [o for c, o in cases if c is not None]
    expected = ece(conf, ok, bins=4)
    assert not math.isclose(expected, ece(conf, ok)) and expected > 0  # 4 bins are not 10
    what = "compute_metrics with calibration_bins=4 (8 confidences, 2 labelled predictions without one)"
    result = monitor.compute_metrics("1d")
    assert_metric(result, "calibration_error", expected, what)
    histogram = [int(c) for c in get(result, "confidence_histogram", what)]
    assert histogram == [2, 2, 2, 2], f"{what}: confidence_histogram should be [2, 2, 2, 2]; got {histogram}"
    assert_metric(result, "mean_confidence", float(np.mean(conf)),
                  f"{what}: the mean of the 8 confidences, the predictions without one left out,")


def track_labelled(monitor, actual, predicted, start: datetime = T0) -> None:
    """One prediction a minute from ``start``, each with its label given when it is tracked."""
    for k, (label, prediction) in enumerate(zip(actual, predicted, strict=True)):
        monitor.track_prediction({"k": k}, prediction, label, timestamp=start + timedelta(minutes=k + 1))


def assert_scores(result, expected, what: str) -> None:
    """precision, recall and f1 of ``result`` are ``expected`` (in that order)."""
    __tracebackhide__ = True
    for key, value in zip(("precision", "recall", "f1"), expected, strict=True):
        assert_metric(result, key, value, what)


@pytest.mark.points(2)
@pytest.mark.covers("binary-average")
def test_positive_label_gives_that_labels_metrics(fresh):
    """With positive_label, precision/recall/F1 are that label's (scikit-learn's binary average)."""
    y = ["spam"] * 6 + ["ham"] * 14
    p = ["spam"] * 4 + ["ham"] * 2 + ["spam"] * 5 + ["ham"] * 9
    monitor, _ = fresh(T0 + DAY, positive_label="spam")
    track_labelled(monitor, y, p)
    expected = precision_recall_fscore_support(y, p, pos_label="spam", average="binary")[:3]
    macro = precision_recall_fscore_support(y, p, average="macro")
    assert not math.isclose(expected[0], macro[0])  # the case tells binary from macro
    assert_scores(monitor.compute_metrics("1d"), expected, "compute_metrics with positive_label='spam'")
    y2, p2 = ["spam"] * 3 + ["ham"] * 7, ["ham"] * 10  # the next day, 'spam' is never predicted
    track_labelled(monitor, y2, p2, start=T0 + DAY)
    expected = precision_recall_fscore_support(y2, p2, pos_label="spam", average="binary", zero_division=0)[:3]
    assert_scores(monitor.compute_metrics("1d", end=T0 + 2 * DAY), expected,
                  "compute_metrics with positive_label='spam' never predicted (0, not 1)")
    # positive_label=0 on 0/1 labels: a label that is falsy is still the positive one.
    y3 = [0] * 7 + [1] * 13
    p3 = [0] * 5 + [1] * 2 + [0] * 4 + [1] * 9
    expected = precision_recall_fscore_support(y3, p3, pos_label=0, average="binary")[:3]
    macro = precision_recall_fscore_support(y3, p3, average="macro")[:3]
    assert not math.isclose(expected[0], macro[0])  # the case tells them apart
    monitor, _ = fresh(T0 + DAY, positive_label=0)
    track_labelled(monitor, y3, p3)
    assert_scores(monitor.compute_metrics("1d"), expected,
                  "compute_metrics with positive_label=0 (0 is a label like any other)")
    # Three labels: 'churn' against the two others together.
    y4 = ["churn"] * 5 + ["stay"] * 8 + ["upgrade"] * 5
    p4 = ["churn"] * 3 + ["upgrade"] * 2 + ["stay"] * 6 + ["churn"] * 2 + ["upgrade"] * 4 + ["stay"]
    truth, said = [v == "churn" for v in y4], [v == "churn" for v in p4]
    expected = precision_recall_fscore_support(truth, said, pos_label=True, average="binary")[:3]
    assert not math.isclose(expected[2], precision_recall_fscore_support(y4, p4, average="macro")[2])
    monitor, _ = fresh(T0 + DAY, positive_label="churn")
    track_labelled(monitor, y4, p4)
    assert_scores(monitor.compute_metrics("1d"), expected,
                  "compute_metrics with positive_label='churn' among churn, stay and upgrade ('churn' "
                  "against the two others)")


@pytest.mark.points(2)
@pytest.mark.covers("macro-average")
def test_macro_average_counts_a_label_never_predicted(fresh):
    """Macro precision/recall/F1 average over every label seen, a never-predicted one counting 0."""
    y = ["a"] * 8 + ["b"] * 6 + ["c"] * 4
    p = ["a"] * 7 + ["b"] + ["b"] * 5 + ["a"] + ["a"] * 4  # 'c' is never predicted
    monitor, _ = fresh(T0 + DAY)
    for k, predicted in enumerate(p):  # labels arrive later
        monitor.track_prediction({"k": k}, predicted, timestamp=T0 + timedelta(minutes=k + 1), prediction_id=f"q{k}")
    for k, actual in enumerate(y):
        monitor.record_actual(f"q{k}", actual)
    for k in range(3):  # predictions of a label 'z' whose truth is not known yet: not a label of the metrics
        monitor.track_prediction({"k": 100 + k}, "z", timestamp=T0 + timedelta(hours=2, minutes=k))
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=["a", "b", "c"], average="macro",
                                                       zero_division=0)
    weighted = precision_recall_fscore_support(y, p, average="weighted", zero_division=0)
    assert not math.isclose(f1, weighted[2])
    result = monitor.compute_metrics("1d")
    assert_scores(result, (prec, rec, f1), "compute_metrics on labels a, b, c (c never predicted; 'z' is "
                  "predicted only by unlabelled predictions, so it is not one of the labels)")
    assert_metric(result, "accuracy", accuracy_score(y, p), "compute_metrics on labels a, b, c")
    # The other side: a label that is predicted but is never the true one counts too.
    y = ["a"] * 6 + ["b"] * 6
    p = ["a"] * 5 + ["d"] + ["b"] * 4 + ["d"] * 2
    monitor, _ = fresh(T0 + DAY)
    track_labelled(monitor, y, p)
    expected = precision_recall_fscore_support(y, p, labels=["a", "b", "d"], average="macro", zero_division=0)[:3]
    assert_scores(monitor.compute_metrics("1d"), expected,
                  "compute_metrics on labels a, b and d (d predicted, never true)")


@pytest.mark.points(1)
@pytest.mark.covers("no-labels")
def test_without_labels_the_metrics_are_none(fresh):
    """A window with predictions but no label has None metrics, not 0 or NaN."""
    monitor, _ = fresh(T0 + DAY)
    for k in range(5):
        monitor.track_prediction({"k": k}, k % 2, confidence=0.9, timestamp=T0 + timedelta(hours=k + 1))
    result = monitor.compute_metrics("1d")
    for key in ("accuracy", "precision", "recall", "f1", "calibration_error"):
        assert_metric(result, key, None, "compute_metrics on 5 unlabelled predictions")
    assert get(result, "n_predictions", "compute_metrics") == 5
    assert get(result, "n_labelled", "compute_metrics") == 0, "n_labelled should be 0 without labels"


@pytest.mark.points(1)
@pytest.mark.covers("empty-window")
def test_empty_window(fresh):
    """A window without predictions: zero counts, empty distribution, zero histogram, mean None."""
    monitor, _ = fresh(T0 + 5 * DAY)
    monitor.track_prediction({"k": 0}, 1, 1, confidence=0.7, timestamp=T0 + timedelta(hours=1))
    result = monitor.compute_metrics("1d")
    what = "compute_metrics on an empty window"
    assert get(result, "n_predictions", what) == 0, f"{what}: n_predictions should be 0"
    assert dict(get(result, "prediction_distribution", what)) == {}, f"{what}: prediction_distribution should be {{}}"
    assert list(get(result, "confidence_histogram", what)) == [0] * 10, f"{what}: the histogram should be 10 zeros"
    for key in ("mean_confidence", "accuracy", "calibration_error"):
        assert_metric(result, key, None, what)


# -- tracking and labels -------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("prediction-time", "label-join")
def test_a_late_label_stays_with_its_predictions_window(fresh):
    """A label that arrives days later counts in the window of its prediction, not of its arrival."""
    monitor, clock = fresh(T0 + timedelta(hours=1))
    early = monitor.track_prediction({"k": 0}, 1)
    clock.now = T0 + 3 * DAY
    monitor.track_prediction({"k": 1}, 0, confidence=0.6)
    monitor.record_actual(early, 0)
    late = monitor.compute_metrics("1d")
    assert get(late, "n_labelled", "compute_metrics('1d') on the label's day") == 0, (
        "the window of the day the label arrived should hold no labelled prediction: "
        "the prediction was made 3 days earlier"
    )
    then = monitor.compute_metrics("1d", end=T0 + DAY)
    assert get(then, "n_labelled", "compute_metrics('1d') on the prediction's day") == 1
    assert_metric(then, "accuracy", 0.0, "compute_metrics('1d') on the prediction's day (1 predicted, label 0)")


@pytest.mark.points(1)
@pytest.mark.covers("label-replace")
def test_a_second_label_replaces_the_first(fresh):
    """Recording a label twice keeps the later one, and the next metrics see it (no stale result)."""
    monitor, _ = fresh(T0 + DAY)
    pid = monitor.track_prediction({"k": 0}, 1, timestamp=T0 + timedelta(hours=1))
    monitor.record_actual(pid, 0)
    assert_metric(monitor.compute_metrics("1d"), "accuracy", 0.0, "compute_metrics after the first label (0)")
    monitor.record_actual(pid, 1)
    assert get(monitor.get_prediction(pid), "actual", "get_prediction") == 1
    assert_metric(
        monitor.compute_metrics("1d"), "accuracy", 1.0,
        "compute_metrics called again after the label was corrected to 1 (a result kept from the first call?)",
    )
    monitor.track_prediction({"k": 1}, 0, 1, timestamp=T0 + timedelta(hours=2))
    again = monitor.compute_metrics("1d")
    assert get(again, "n_predictions", "compute_metrics after one more prediction") == 2, (
        "compute_metrics('1d') called a third time should count the prediction tracked since the last call"
    )


@pytest.mark.points(1)
@pytest.mark.covers("label-unknown", "get-unknown")
def test_unknown_prediction_id_raises_keyerror(fresh):
    """record_actual and get_prediction raise KeyError naming an id nobody tracked."""
    monitor, _ = fresh()
    monitor.track_prediction({"k": 0}, 1, timestamp=T0)
    with learner_error(KeyError, what="record_actual('nope-42', 1)") as caught:
        monitor.record_actual("nope-42", 1)
    assert "nope-42" in str(caught.value), f"the KeyError should name the id 'nope-42'; got {caught.value!r}"
    with learner_error(KeyError, what="get_prediction('nope-42')"):
        monitor.get_prediction("nope-42")


@pytest.mark.points(2)
@pytest.mark.covers("get-prediction", "types-kept", "track-stored")
def test_get_prediction_gives_everything_back(fresh):
    """get_prediction returns inputs, labels (types kept), confidence and the exact timestamp."""
    monitor, _ = fresh()
    when = datetime(2024, 3, 2, 13, 14, 15, 123000, tzinfo=timezone(timedelta(hours=2)))
    inputs = {"age": np.int64(42), "score": np.float64(0.25), "plan": "pro", "tags": ["a", "b"], "vip": True,
              "embedding": np.array([0.5, 1.5])}
    cases = [("1", 1, 0.75), (1, "1", None), (True, False, 0.0)]
    for prediction, actual, confidence in cases:
        pid = monitor.track_prediction(inputs, prediction, actual, confidence=confidence, timestamp=when)
        got = monitor.get_prediction(pid)
        what = f"get_prediction after track_prediction(..., {prediction!r}, {actual!r})"
        for key, value in (("prediction", prediction), ("actual", actual), ("confidence", confidence)):
            back = get(got, key, what)
            assert back == value and type(back) is type(value), f"{what}['{key}'] should be {value!r}; got {back!r}"
        assert get(got, "prediction_id", what) == pid
        stamp = get(got, "timestamp", what)
        assert isinstance(stamp, datetime) and stamp.tzinfo is not None and stamp == when, (
            f"{what}['timestamp'] should be the instant {when.isoformat()}, timezone-aware; got {stamp!r}"
        )
        back = dict(get(got, "input_features", what))
        assert back == {"age": 42, "score": 0.25, "plan": "pro", "tags": ["a", "b"], "vip": True,
                        "embedding": [0.5, 1.5]}, (
            f"{what}['input_features'] should be the features tracked; got {back}"
        )


@pytest.mark.points(1)
@pytest.mark.covers("id-given", "id-unique")
def test_prediction_ids(fresh):
    """Ids are unique strings; a chosen id is used, and choosing it twice raises ValueError."""
    monitor, _ = fresh()
    ids = [monitor.track_prediction({"k": k}, 1, timestamp=T0) for k in range(30)]
    assert all(isinstance(i, str) for i in ids) and len(set(ids)) == 30, f"30 ids should be 30 distinct strings; got {ids[:5]}…"
    assert monitor.track_prediction({"k": 0}, 1, timestamp=T0, prediction_id="req-7") == "req-7"
    with learner_error(ValueError, what="track_prediction(..., prediction_id='req-7') a second time"):
        monitor.track_prediction({"k": 1}, 0, timestamp=T0, prediction_id="req-7")
    assert get(monitor.get_prediction("req-7"), "prediction", "get_prediction('req-7')") == 1, (
        "the refused duplicate should not replace the first prediction 'req-7'"
    )


@pytest.mark.points(1)
@pytest.mark.covers("json-only")
def test_features_json_cannot_hold_are_refused(fresh):
    """Input features that are not JSON values raise TypeError and store nothing."""
    monitor, _ = fresh(T0 + DAY)
    with learner_error(TypeError, what="track_prediction({'when': object()}, 1)"):
        monitor.track_prediction({"when": object()}, 1, timestamp=T0 + timedelta(hours=1))
    with learner_error(TypeError, what="track_prediction({'k': 1}, 1, actual=object())"):
        monitor.track_prediction({"k": 1}, 1, object(), timestamp=T0 + timedelta(hours=2))
    count = get(monitor.compute_metrics("1d"), "n_predictions", "compute_metrics after the refused predictions")
    assert count == 0, f"a refused prediction (features or actual) should not be stored; the window holds {count}"


@pytest.mark.points(1)
@pytest.mark.covers("timestamp-aware")
def test_naive_timestamp_is_refused(fresh):
    """A timestamp without a timezone raises ValueError."""
    monitor, _ = fresh()
    with learner_error(ValueError, what="track_prediction(..., timestamp=datetime(2024, 3, 1, 12))"):
        monitor.track_prediction({"k": 0}, 1, timestamp=datetime(2024, 3, 1, 12))


@pytest.mark.points(1)
@pytest.mark.covers("timestamp-default", "clock")
def test_timestamp_defaults_to_the_clock(fresh):
    """Without a timestamp, a prediction is made at the clock's time."""
    monitor, clock = fresh(datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
    pid = monitor.track_prediction({"k": 0}, 1)
    stamp = get(monitor.get_prediction(pid), "timestamp", "get_prediction")
    assert stamp == clock.now, f"the prediction's timestamp should be the clock's {clock.now.isoformat()}; got {stamp!r}"


@pytest.mark.points(1)
@pytest.mark.covers("confidence-range")
def test_confidence_outside_zero_one_is_refused(fresh):
    """Confidences 0 and 1 are accepted; -0.1, 1.1 and NaN raise ValueError."""
    monitor, _ = fresh()
    for ok in (0.0, 1.0):
        monitor.track_prediction({"k": 0}, 1, confidence=ok, timestamp=T0)
    for bad in (-0.1, 1.1, float("nan")):
        with learner_error(ValueError, what=f"track_prediction(..., confidence={bad})"):
            monitor.track_prediction({"k": 0}, 1, confidence=bad, timestamp=T0)


@pytest.mark.points(1)
@pytest.mark.covers("actual-now")
def test_label_given_at_tracking_time(fresh):
    """A label passed to track_prediction counts as if it had been recorded at once."""
    monitor, _ = fresh(T0 + DAY)
    for k, (p, a) in enumerate([(1, 1), (0, 1), (1, 1), (0, 0)]):
        monitor.track_prediction({"k": k}, p, a, timestamp=T0 + timedelta(hours=k + 1))
    result = monitor.compute_metrics("1d")
    assert get(result, "n_labelled", "compute_metrics") == 4
    assert_metric(result, "accuracy", 0.75, "compute_metrics on 4 predictions labelled when tracked")


# -- degradation ---------------------------------------------------------------------------------


def assert_verdict(result, expected, degraded: bool, what: str) -> None:
    __tracebackhide__ = True
    got = get(result, "degraded", what)
    assert got is degraded, f"{what} should say degraded={degraded} (a bool); got {got!r} ({type(got).__name__})"
    assert get(result, "status", what) == ("degraded" if degraded else "ok"), (
        f"{what}['status'] should be {'degraded' if degraded else 'ok'!r}; got {get(result, 'status', what)!r}"
    )
    assert_metric(result, "p_value", expected, what)
    reason = get(result, "reason", what)
    assert isinstance(reason, str) and reason.strip(), f"{what}['reason'] should be a sentence; got {reason!r}"


@pytest.mark.points(3)
@pytest.mark.covers("fisher-test", "degradation-fields")
def test_no_false_alarm_before_the_change(world, frame):
    """Every day before the degradation, the 1d window against its 7d baseline raises no alarm."""
    monitor, _, _ = world
    for end in [T0 + d * DAY for d in range(2, 11)] + [CHANGE - timedelta(hours=5)]:
        p, table = reference_test(frame, end, DAY, 7 * DAY)
        assert p >= 0.05  # the case is built so
        what = f"detect_degradation('1d', '7d', end={end:%Y-%m-%d %H:%M})"
        result = monitor.detect_degradation("1d", "7d", end=end)
        assert_verdict(result, p, False, what)
        base, cur = table
        assert get(result, "n_baseline", what) == sum(base), f"{what}['n_baseline'] should be {sum(base)}"
        assert get(result, "n_window", what) == sum(cur), f"{what}['n_window'] should be {sum(cur)}"
        assert_metric(result, "baseline_accuracy", base[0] / sum(base), what)
        assert_metric(result, "window_accuracy", cur[0] / sum(cur), what)


@pytest.mark.points(3)
@pytest.mark.covers("fisher-test", "degradation-fields", "alpha-strict")
def test_alarm_after_the_change(world, frame):
    """Once a full day of degraded predictions is in the window, every check raises the alarm."""
    monitor, clock, _ = world
    for end in [CHANGE + DAY, CHANGE + DAY + timedelta(hours=9), CHANGE + 2 * DAY, T0 + DAYS * DAY]:
        p, _ = reference_test(frame, end, DAY, 7 * DAY)
        assert p < 0.05
        clock.now = end
        assert_verdict(monitor.detect_degradation(), p, True, f"detect_degradation() at {end:%Y-%m-%d %H:%M}")
    clock.now = T0 + DAYS * DAY


@pytest.mark.points(2)
@pytest.mark.covers("baseline-span")
def test_baseline_is_the_span_just_before_the_window(world, frame):
    """The baseline is ``baseline`` long and ends where the window starts (other spans: other counts)."""
    monitor, _, _ = world
    end = CHANGE + 3 * DAY
    for window, span, baseline, base_span in [("1d", DAY, "2d", 2 * DAY), ("2d", 2 * DAY, "3d", 3 * DAY)]:
        p, (base, cur) = reference_test(frame, end, span, base_span)
        what = f"detect_degradation({window!r}, {baseline!r}, end={end:%Y-%m-%d})"
        result = monitor.detect_degradation(window, baseline, end=end)
        assert get(result, "n_baseline", what) == sum(base), (
            f"{what}['n_baseline'] should be {sum(base)}, the labelled predictions of the {baseline} "
            f"before the window; got {get(result, 'n_baseline', what)!r}"
        )
        assert_metric(result, "baseline_accuracy", base[0] / sum(base), what)
        assert_metric(result, "p_value", p, what)


class MovingClock(Clock):
    """A clock that is three hours later at each call."""

    def __call__(self) -> datetime:
        now, self.now = self.now, self.now + timedelta(hours=3)
        return now


@pytest.mark.points(1)
@pytest.mark.covers("baseline-span", "clock", "end-default")
def test_window_and_baseline_share_one_reading_of_the_clock(mod, tmp_path):
    """Without end, the window ends at one reading of the clock and the baseline ends where the
    window starts, even when the clock moves between calls (traffic growing over time, so each
    span's count tells which instant it ends at)."""
    start = T0 + DAY * 5 // 2
    path = tmp_path / "moving.db"
    tracking = mod.ModelMonitor(str(path), clock=Clock(start))
    stamps = [T0 + timedelta(minutes=int(4320 * (k / 600) ** 0.5)) for k in range(1, 601)]
    for k, stamp in enumerate(stamps):
        tracking.track_prediction({"k": k}, 1, 1, timestamp=stamp)
    tracking.close()
    # A monitor of its own for the moving clock (under sealed grading the clock lives in the learner's process).
    monitor = mod.ModelMonitor(str(path), clock=MovingClock(start), min_samples=5)

    def count(a: datetime, b: datetime) -> int:
        return sum(a < t <= b for t in stamps)

    readings = [start + timedelta(hours=3 * i) for i in range(8)]
    pairs = {(count(t - DAY, t), count(t - 2 * DAY, t - DAY)) for t in readings}
    mixed = (count(readings[0] - DAY, readings[0]), count(readings[1] - 2 * DAY, readings[1] - DAY))
    assert mixed not in pairs  # the case tells one reading from two
    what = "detect_degradation('1d', '1d') with a clock three hours later at each call"
    result = monitor.detect_degradation("1d", "1d")
    got = (get(result, "n_window", what), get(result, "n_baseline", what))
    assert got in pairs, (
        f"{what}: the window and the baseline should end at one reading of the clock, the baseline where "
        f"the window starts; n_window and n_baseline are {got}, which no single instant gives"
        + (" (the baseline was placed from a second reading of the clock)" if got == mixed else "")
    )


@pytest.mark.points(1)
@pytest.mark.covers("one-sided")
def test_a_better_window_is_not_degradation(fresh):
    """A window far more accurate than its baseline raises no alarm (the test is one-sided)."""
    monitor, _ = fresh(T0 + 2 * DAY, min_samples=20)
    for k in range(40):  # day 1: 50% correct; day 2: all correct
        correct = k % 2 == 0
        monitor.track_prediction({"k": k}, 1, 1 if correct else 0, timestamp=T0 + timedelta(minutes=30 * k + 1))
        monitor.track_prediction({"k": k}, 1, 1, timestamp=T0 + DAY + timedelta(minutes=30 * k + 1))
    table = [[20, 20], [40, 0]]
    p = stats.fisher_exact(table, alternative="greater").pvalue
    assert stats.fisher_exact(table).pvalue < 1e-6  # a two-sided test would call it a change
    result = monitor.detect_degradation("1d", "1d")
    assert_verdict(result, p, False, "detect_degradation when accuracy went from 50% to 100%")


@pytest.mark.points(1)
@pytest.mark.covers("alpha-strict")
def test_alpha_is_a_strict_threshold(fresh):
    """Degraded when the p-value is below alpha; at alpha exactly, not."""
    table = [[45, 5], [38, 12]]
    p = stats.fisher_exact(table, alternative="greater").pvalue
    for alpha, degraded in [(p, False), (p * (1 + 1e-9), True)]:
        monitor, _ = fresh(T0 + 2 * DAY, min_samples=50, alpha=alpha)
        for k in range(50):
            monitor.track_prediction({"k": k}, 1, 1 if k < 45 else 0, timestamp=T0 + timedelta(minutes=20 * k + 1))
            monitor.track_prediction({"k": k}, 1, 1 if k < 38 else 0, timestamp=T0 + DAY + timedelta(minutes=20 * k + 1))
        result = monitor.detect_degradation("1d", "1d")
        assert_verdict(result, p, degraded, f"detect_degradation with alpha={alpha!r} and p={p!r}")


@pytest.mark.points(2)
@pytest.mark.covers("min-samples", "min-samples-boundary", "reason-names-counts", "degradation-fields")
def test_minimum_sample_size(fresh):
    """Exactly min_samples labelled predictions are enough; one fewer gives no test, no alarm, and says why."""
    for n, enough in [(30, True), (29, False)]:
        monitor, _ = fresh(T0 + 2 * DAY, min_samples=30)
        for k in range(40):  # baseline: 40, all correct
            monitor.track_prediction({"k": k}, 1, 1, timestamp=T0 + timedelta(minutes=30 * k + 1))
        for k in range(n):  # window: n, all wrong — a collapse, if there is enough data to say so
            monitor.track_prediction({"k": k}, 1, 0, timestamp=T0 + DAY + timedelta(minutes=30 * k + 1))
        what = f"detect_degradation with {n} labelled predictions in the window and min_samples=30"
        result = monitor.detect_degradation("1d", "1d")
        if enough:
            p = stats.fisher_exact([[40, 0], [0, n]], alternative="greater").pvalue
            assert_verdict(result, p, True, what)
            continue
        assert get(result, "degraded", what) is False, f"{what}: degraded should be False"
        assert get(result, "status", what) == "insufficient_data", f"{what}: status should be 'insufficient_data'"
        assert get(result, "p_value", what) is None, f"{what}: p_value should be None (no test was run)"
        assert_metric(result, "baseline_accuracy", 1.0, what + " (the accuracies are there: there are labels)")
        assert_metric(result, "window_accuracy", 0.0, what + " (the accuracies are there: there are labels)")
        reason = str(get(result, "reason", what))
        assert "29" in reason and "30" in reason, (
            f"{what}: the reason should name the 29 labelled predictions and the minimum 30; got {reason!r}"
        )
    monitor, _ = fresh(T0 + 2 * DAY, min_samples=30)
    for k in range(29):  # a short baseline is not enough either
        monitor.track_prediction({"k": k}, 1, 1, timestamp=T0 + timedelta(minutes=30 * k + 1))
    for k in range(40):
        monitor.track_prediction({"k": k}, 1, 0, timestamp=T0 + DAY + timedelta(minutes=30 * k + 1))
    what = "detect_degradation with 29 labelled predictions in the baseline and min_samples=30"
    result = monitor.detect_degradation("1d", "1d")
    assert get(result, "status", what) == "insufficient_data", f"{what}: status should be 'insufficient_data'"
    assert get(result, "degraded", what) is False, f"{what}: degraded should be False"
    reason = str(get(result, "reason", what))
    assert "29" in reason and "30" in reason, (
        f"{what}: the reason should name the baseline's 29 labelled predictions and the minimum 30; got {reason!r}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("min-samples")
def test_default_minimum_is_100_labelled_predictions(world, frame):
    """By default a window with fewer than 100 labelled predictions raises no alarm, however bad."""
    monitor, _, _ = world
    end, span = CHANGE + timedelta(hours=17), timedelta(hours=17)  # 102 degraded predictions, 94 labelled
    window = in_window(frame, end - span, end)
    n = int(window.labelled.sum())
    p, _ = reference_test(frame, end, span, 7 * DAY, min_samples=1)
    assert len(window) >= 100 > n and p < 1e-6  # a plain drop; 100+ predictions, but not 100 labelled
    what = f"detect_degradation('17h') with {len(window)} predictions, {n} of them labelled"
    result = monitor.detect_degradation("17h", "7d", end=end)
    assert get(result, "degraded", what) is False, (
        f"{what}: {n} labelled predictions are below the default minimum of 100: no alarm"
    )
    assert get(result, "status", what) == "insufficient_data", f"{what}: status should be 'insufficient_data'"


# -- durability and databases --------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("durable", "sqlite-default", "close", "id-unique", "id-given")
def test_data_survives_a_new_monitor_on_the_same_file(mod, frame, tmp_path):
    """A new ModelMonitor on the same SQLite file (created with its folder; a str, then a Path)
    sees everything, never hands out an id again, and refuses a chosen id that is stored."""
    path = tmp_path / "new" / "folder" / "monitor.db"
    first = mod.ModelMonitor(str(path), clock=Clock(T0 + 3 * DAY))
    part = frame.iloc[: 3 * 144]
    send(first, part)
    early = first.track_prediction({"k": 0}, 1, timestamp=T0)  # before the windows below
    first.close()
    first.close()
    assert path.is_file() and path.read_bytes()[:16] == b"SQLite format 3\x00", (
        f"ModelMonitor({str(path)!r}) should keep its predictions in that SQLite file"
    )
    second = mod.ModelMonitor(path, clock=Clock(T0 + 3 * DAY))
    assert_metrics(second.compute_metrics("2d"), reference_metrics(part, T0 + DAY, T0 + 3 * DAY),
                   "compute_metrics('2d') from a new ModelMonitor on the same file, given as a Path")
    later = second.track_prediction({"k": 1}, 0, timestamp=T0)
    assert later != early, (
        f"a new ModelMonitor on the same file handed out the id {later!r} again: ids should be unique in "
        "the database, not only within one monitor"
    )
    assert get(second.get_prediction(early), "input_features", f"get_prediction({early!r})") == {"k": 0}
    with learner_error(ValueError, what=f"track_prediction(..., prediction_id={early!r}), an id stored "
                                        "by an earlier monitor on the same file,"):
        second.track_prediction({"k": 2}, 1, timestamp=T0, prediction_id=early)
    second.close()


SUBPROCESS = """
import json, sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from workbook import load_exercise
mod = load_exercise("ce4_3", "monitor", Path(sys.argv[1]))
monitor = mod.ModelMonitor(sys.argv[2])
t0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
for k in range(6):
    monitor.track_prediction({"k": k}, k % 2, confidence=0.9, timestamp=t0 + timedelta(hours=k + 1),
                             prediction_id=f"proc-{k}")
monitor.record_actual("proc-0", 1)
"""


@pytest.mark.points(2)
@pytest.mark.covers("durable", "track-stored")
def test_data_survives_the_process(mod, target_dir, tmp_path):
    """Predictions tracked by another process, which then exits, are all there."""
    path = tmp_path / "shared.db"
    mod.ModelMonitor(str(path)).close()  # the learner's constructor runs here first
    # The learner's code in a program of its own: under sealed grading, as the sandbox user.
    run = run_learner_program([sys.executable, "-c", SUBPROCESS, str(target_dir), str(path)],
                              reads=(target_dir / "ce4_3",), capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
    assert run.returncode == 0, f"a process tracking 6 predictions failed: {run.stderr.strip().splitlines()[-1:]}"
    monitor = mod.ModelMonitor(str(path), clock=Clock(T0 + DAY))
    result = monitor.compute_metrics("1d")
    assert get(result, "n_predictions", "compute_metrics") == 6, (
        "a new monitor should see the 6 predictions the other process tracked; "
        f"got n_predictions={get(result, 'n_predictions', 'compute_metrics')!r}"
    )
    assert get(monitor.get_prediction("proc-0"), "actual", "get_prediction('proc-0')") == 1
    with sqlite3.connect(path) as conn:  # the file itself holds them (not a cache beside it)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    assert 6 in rows.values(), f"the SQLite file should have a table with the 6 predictions; its tables hold {rows}"


@pytest.mark.points(3)
@pytest.mark.covers("postgres-url", "durable", "close")
def test_works_on_postgresql(mod, frame, database, postgres):
    """On a real PostgreSQL, metrics and the verdict equal the reference, and a new monitor sees it all."""
    dsn, name = database
    part = frame[(frame.ts > CHANGE - 3 * DAY) & (frame.ts <= CHANGE + DAY)]
    monitor = mod.ModelMonitor(dsn, clock=Clock(CHANGE + DAY))
    send(monitor, part)
    monitor.close()
    with postgres.connect(autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (name,)).fetchone()[0]
    assert left == 0, f"close() should close the monitor's PostgreSQL connection; {left} still open"
    short = "postgres://" + dsn.split("://", 1)[1]  # the other spelling the contract accepts
    again = mod.ModelMonitor(short, clock=Clock(CHANGE + DAY))
    assert_metrics(again.compute_metrics("1d"), reference_metrics(part, CHANGE, CHANGE + DAY),
                   "compute_metrics('1d') on PostgreSQL, from a new monitor given a postgres:// URL")
    p, _ = reference_test(part, CHANGE + DAY, DAY, 3 * DAY)
    assert_verdict(again.detect_degradation("1d", "3d"), p, True, "detect_degradation('1d', '3d') on PostgreSQL")
    with postgres.connect(dbname=name) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_schema || '.\"' || table_name || '\"' FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")]
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    assert len(part) in rows.values(), (
        f"the PostgreSQL database should hold the {len(part)} predictions in a table; its tables hold {rows}"
    )
    again.close()


@pytest.mark.points(1)
@pytest.mark.covers("reconnect")
def test_a_dropped_postgres_connection_is_reopened(mod, database, postgres):
    """After the server closes the monitor's connection (a restart), the next calls work."""
    dsn, name = database
    monitor = mod.ModelMonitor(dsn, clock=Clock(T0 + DAY))
    monitor.track_prediction({"k": 0}, 1, 1, timestamp=T0 + timedelta(hours=1))
    with postgres.connect(autocommit=True) as conn:
        # No backend to end is right too: a monitor may open a connection per call.
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
    time.sleep(0.2)
    monitor.track_prediction({"k": 1}, 1, 0, timestamp=T0 + timedelta(hours=2))
    result = monitor.compute_metrics("1d")
    assert get(result, "n_predictions", "compute_metrics after the connection was dropped") == 2
    monitor.close()


@pytest.mark.points(1)
@pytest.mark.covers("db-unreachable")
def test_unreachable_postgres_raises_connection_error(mod):
    """A PostgreSQL URL where nothing listens raises ConnectionError naming host and port, not the password."""
    port = free_port()
    dsn = f"postgresql://monitor:s3cret-pw@127.0.0.1:{port}/monitoring"
    started = time.monotonic()
    with learner_error(ConnectionError, what=f"ModelMonitor('{dsn}') with nothing listening") as caught:
        mod.ModelMonitor(dsn)
    message = str(caught.value)
    assert time.monotonic() - started < 20, "the error should come within seconds, not after a long hang"
    assert str(port) in message and "127.0.0.1" in message, f"the error should name 127.0.0.1:{port}; got {message!r}"
    assert "s3cret-pw" not in message, f"the error should not show the password; got {message!r}"


@pytest.mark.points(1)
@pytest.mark.covers("track-stored")
def test_stored_before_returning(mod, tmp_path):
    """Each tracked prediction is in the file as soon as track_prediction returns."""
    path = tmp_path / "now.db"
    monitor = mod.ModelMonitor(str(path))
    for k in range(3):
        monitor.track_prediction({"k": k}, 1, timestamp=T0 + timedelta(minutes=k))
        with sqlite3.connect(path, timeout=10) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows = [conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables]
        assert k + 1 in rows, (
            f"after {k + 1} calls of track_prediction, another connection to the file should see "
            f"{k + 1} predictions; its tables hold {rows}"
        )
    monitor.close()
