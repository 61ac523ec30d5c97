"""Graders for AP4.2 — the production drift monitor, called directly.

The windows are checked with the graders' own detectors: one records every window it is
given, one decides drift from values the graders chose (the mean of each feature), so each
window's content, score and verdict is known here before the learner's code runs. The
default detector's scores are compared with ``scipy.stats.ks_2samp`` on the same windows.
Retraining runs are counted on a real MLflow tracking server with the MLflow client, and
the server is taken down (an unused port, a proxy answering 503 or never answering) to
check that serving goes on.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pandas as pd
import pytest
from ap4_2_support import (
    DerivedFeatureDetector,
    MeanDetector,
    RecordingDetector,
    TrackingProxy,
    TrackingReader,
    calm_window,
    describe,
    flags,
    ks,
    now_ms,
    reference_frame,
    res,
    results_list,
    runs_in,
    sample,
    sample_type,
    shifted_window,
)

from workbook.checks import assert_close, learner_error
from workbook.services.base import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pipeline(load_module):
    return load_module("pipeline")


@pytest.fixture(scope="module")
def client(mlflow_server):
    """The tracking server, read with its REST API (ap4_2_support.TrackingReader)."""
    return TrackingReader(mlflow_server.tracking_uri)


def experiment_name(label: str) -> str:
    """A fresh experiment per check, so a warm server shared by several runs stays readable."""
    return f"ap4_2-{label}-{uuid.uuid4().hex[:8]}"


def numbered_rows(n: int, start: int = 0) -> pd.DataFrame:
    """Rows whose values say which row they are: x = r, y = 1000 + r, and an id column."""
    r = np.arange(start, start + n, dtype=float)
    return pd.DataFrame({"request_id": [f"req-{int(i)}" for i in r], "y": 1000.0 + r, "x": r})


def feed(monitor, rows: pd.DataFrame, chunks: list[int]) -> list[list]:
    """Send ``rows`` in consecutive chunks of the given sizes; the results of each call."""
    out, at = [], 0
    for size in chunks:
        out.append(results_list(monitor.observe(rows.iloc[at:at + size]), what="observe()"))
        at += size
    assert at == len(rows), "the graders' chunks should cover every row"
    return out


def window_values(window: pd.DataFrame) -> np.ndarray:
    return np.asarray(window[["x", "y"]], dtype=float)


def assert_window(window, expected_x: np.ndarray, what: str) -> None:
    """The detector got the rows whose x values are ``expected_x``, as [x, y] indexed 0..n-1."""
    __tracebackhide__ = True
    assert isinstance(window, pd.DataFrame), f"{what}: the detector should get a DataFrame; got {type(window).__name__}"
    assert list(window.columns) == ["x", "y"], (
        f"{what}: the detector should get the reference's columns ['x', 'y'] in its order; got {list(window.columns)}")
    assert list(window.index) == list(range(len(expected_x))), (
        f"{what}: the window should be indexed 0..{len(expected_x) - 1}; got {list(window.index)[:12]}")
    expected = np.column_stack([expected_x, 1000.0 + expected_x])
    got = window_values(window)
    assert got.shape == expected.shape and np.array_equal(got, expected), (
        f"{what}: the window should hold rows x = {expected_x[:12].tolist()}...; got x = {got[:12, 0].tolist()}...")


def monitor_of(pipeline, reference=None, **kwargs):
    kwargs.setdefault("tracking_uri", f"http://127.0.0.1:{free_port()}")  # nobody answers there
    return pipeline.ProductionDriftMonitor(reference if reference is not None else reference_frame(200), **kwargs)


# -- windows ----------------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.covers("windows", "partial-window", "state-across-calls", "detector-call", "observe-returns",
                    "result-index")
def test_windows_are_full_back_to_back_and_fill_across_calls(pipeline):
    """Rows fill windows of exactly window_size in arrival order; partial windows wait for later calls."""
    reference = reference_frame(50)
    detector = RecordingDetector()
    monitor = monitor_of(pipeline, reference, window_size=6, detector=detector)
    rows = numbered_rows(40)
    chunks = [4, 1, 9, 0, 13, 5, 2, 6]  # windows end inside chunks, at their ends, and across several
    per_call = feed(monitor, rows, chunks)
    ends = np.cumsum(chunks)
    expected_counts = [int(e // 6 - (e - c) // 6) for e, c in zip(ends, chunks, strict=True)]
    got_counts = [len(r) for r in per_call]
    assert got_counts == expected_counts, (
        f"observe() with chunks of {chunks} rows (window_size=6) should return "
        f"{expected_counts} results per call; got {got_counts}")
    indices = [res(r, "index") for call in per_call for r in call]
    assert indices == list(range(6)), f"window results should be indexed 0, 1, 2, ...; got {indices}"
    assert len(detector.calls) == 6, (
        f"40 rows with window_size=6 make 6 full windows (4 rows wait): the detector should be "
        f"called 6 times; got {len(detector.calls)}")
    for k, (ref, window) in enumerate(detector.calls):
        assert ref.shape == reference.shape and np.array_equal(np.asarray(ref, dtype=float),
                                                               np.asarray(reference, dtype=float)), (
            f"window {k}: the detector's first argument should be the reference as given; got a "
            f"{ref.shape[0]}-row frame starting {np.asarray(ref, dtype=float)[:2].tolist()}")
        assert_window(window, np.arange(6 * k, 6 * k + 6, dtype=float), f"window {k}")
    # The 4 waiting rows are completed by the next call, not lost and not checked early.
    last = results_list(monitor.observe(numbered_rows(3, start=40)), what="observe()")
    assert [res(r, "index") for r in last] == [6], (
        f"2 more rows complete window 6 (4 rows were waiting): observe() should return its result; got {len(last)} results")
    assert_window(detector.calls[6][1], np.arange(36, 42, dtype=float), "window 6 (4 waiting rows + 2 new)")
    # The reference as given: an integer column stays an integer column.
    counted = reference.assign(visits=np.arange(len(reference)) % 7)
    detector = RecordingDetector()
    monitor = monitor_of(pipeline, counted, window_size=6, detector=detector)
    monitor.observe(counted.iloc[:6].reset_index(drop=True))
    assert detector.calls, "6 rows with window_size=6 make a window: the detector should be called"
    got = {str(k): str(v) for k, v in detector.calls[0][0].dtypes.items()}
    want = {str(k): str(v) for k, v in counted.dtypes.items()}
    assert got == want, (
        f"the detector's first argument should be the reference exactly as given, dtypes included "
        f"({want}); got {got}")


@pytest.mark.points(2)
@pytest.mark.covers("rows-input", "extra-columns")
def test_rows_may_be_a_frame_a_dict_or_a_list_of_dicts(pipeline):
    """DataFrames, single dicts and lists of dicts all feed the window; extra columns are dropped."""
    detector = RecordingDetector()
    monitor = monitor_of(pipeline, reference_frame(50), window_size=5, detector=detector)
    rows = numbered_rows(5)
    first = rows.iloc[0:2].copy()
    kept = first.copy()
    calls = [
        first,  # a DataFrame whose columns come in another order, with an id column
        {"x": 2.0, "y": 1002.0, "request_id": "req-2", "ts": "2024-06-01T12:00:00Z"},  # one row
        [{"y": 1003.0, "x": 3.0, "user": 7}, {"x": 4.0, "y": 1004.0}],  # a list of rows
    ]
    done = []
    for rows_in in calls:
        done += results_list(monitor.observe(rows_in), what="observe()")
        empty = results_list(monitor.observe([]), what="observe([])")
        assert empty == [], f"observe([]) (no rows) should return []; got {empty!r}"
    assert len(done) == 1 and len(detector.calls) == 1, (
        f"2 + 1 + 2 rows with window_size=5 should complete one window; got {len(done)} results, "
        f"{len(detector.calls)} detector calls")
    assert_window(detector.calls[0][1], np.arange(5, dtype=float), "a window fed a frame, a dict and a list")
    assert first.equals(kept) and list(first.index) == list(kept.index), (
        "observe() should leave the caller's DataFrame as it was (extra columns ignored, not dropped from it); "
        f"it now has the columns {list(first.columns)} and the index {list(first.index)}")


@pytest.mark.points(2)
@pytest.mark.covers("missing-column")
def test_a_row_without_a_feature_is_refused_and_nothing_of_its_call_kept(pipeline):
    """A row missing a reference column raises ValueError naming it; the call's other rows are not kept."""
    detector = RecordingDetector()
    monitor = monitor_of(pipeline, reference_frame(50), window_size=4, detector=detector)
    monitor.observe([{"x": 0.0, "y": 1000.0}, {"x": 1.0, "y": 1001.0}])
    with learner_error(ValueError, what="observe() with a row that has no 'y'") as raised:
        monitor.observe([{"x": 50.0, "y": 1050.0}, {"x": 51.0}])
    assert "'y'" in str(raised.value) or '"y"' in str(raised.value) or " y" in str(raised.value), (
        f"the error should name the missing column 'y'; got {raised.value}")
    with learner_error(ValueError, what="observe() with a DataFrame that has no column 'x'") as raised:
        monitor.observe(pd.DataFrame({"y": [1060.0]}))
    assert "x" in str(raised.value), f"the error should name the missing column 'x'; got {raised.value}"
    assert not detector.calls, "no window should be checked yet: only 2 good rows arrived"
    monitor.observe([{"x": 2.0, "y": 1002.0}, {"x": 3.0, "y": 1003.0}])
    assert len(detector.calls) == 1, (
        f"2 good rows, 2 refused calls, then 2 good rows: one window of 4; got {len(detector.calls)} windows")
    assert_window(detector.calls[0][1], np.arange(4, dtype=float),
                  "the window after a refused call (none of its rows may be kept)")


@pytest.mark.points(3)
@pytest.mark.covers("sampling", "defaults")
@pytest.mark.parametrize("rate,seed", [(0.3, 11), (0.5, None)])
def test_sampling_keeps_the_rows_of_the_seeded_draw(pipeline, rate, seed):
    """With sample_rate r, row i is kept when default_rng(seed).random() drawn for it is below r."""
    detector = RecordingDetector()
    options = {"sample_rate": rate} | ({"seed": seed} if seed is not None else {})
    monitor = monitor_of(pipeline, reference_frame(50), window_size=10, detector=detector, **options)
    rows = numbered_rows(300)
    feed(monitor, rows, [1, 5, 17, 30, 47, 100, 100])
    draws = np.random.default_rng(0 if seed is None else seed).random(300)  # one draw per row, in order
    kept = np.flatnonzero(draws < rate).astype(float)
    assert len(detector.calls) == len(kept) // 10, (
        f"sample_rate={rate}, seed={seed if seed is not None else 'default (0)'}: {len(kept)} of 300 rows are "
        f"kept, making {len(kept) // 10} windows of 10; got {len(detector.calls)} windows")
    for k, (_, window) in enumerate(detector.calls):
        assert_window(window, kept[10 * k: 10 * k + 10],
                      f"window {k} of the rows kept by default_rng({0 if seed is None else seed}).random() < {rate}")


@pytest.mark.points(2)
@pytest.mark.covers("defaults", "run-experiment")
def test_defaults_are_500_rows_patience_3_and_the_drift_retraining_experiment(pipeline, client, mlflow_server):
    """By default a window is 500 rows, 3 drifted windows start a run, in experiment "drift-retraining"."""
    started = now_ms()
    monitor = monitor_of(pipeline, tracking_uri=mlflow_server.tracking_uri,
                         detector=MeanDetector())
    drifting = flags(1500, x=0.9, y=0.1)
    first = results_list(monitor.observe(drifting.iloc[:499]), what="observe()")
    assert first == [], f"499 rows are less than the default window of 500: no result expected; got {len(first)}"
    one = results_list(monitor.observe(drifting.iloc[499:500]), what="observe()")
    assert len(one) == 1, f"the 500th row completes the first default window; got {len(one)} results"
    rest = results_list(monitor.observe(drifting.iloc[500:]), what="observe()")
    runs = runs_in(client, "drift-retraining", since_ms=started)
    assert len(runs) == 1 and runs[0].data.tags.get("window") == "2", (
        "3 drifted windows of 500 rows with the default patience (3) should start one run, at window 2, "
        f"in the experiment 'drift-retraining'; got {describe(runs)}")
    assert [res(r, "run_id") for r in rest] == [None, runs[0].info.run_id], (
        "window 2's result should carry the run's id (window 1's None)")


# -- drift, streaks and episodes --------------------------------------------------------------


def send_windows(monitor, pattern: str, size: int) -> list:
    """One window per letter: D = x drifted, C = calm. Returns the results, one per window."""
    out = []
    for k, letter in enumerate(pattern):
        rows = flags(size, x=0.9 if letter == "D" else 0.1 + 0.01 * k, y=0.2)
        got = results_list(monitor.observe(rows), what="observe()")
        assert len(got) == 1, f"a window of {size} rows should give one result; got {len(got)}"
        out.append(got[0])
    return out


@pytest.mark.points(3)
@pytest.mark.covers("patience", "one-run-per-episode", "result-run-id")
def test_one_run_when_the_streak_reaches_patience_and_not_before(pipeline, client, mlflow_server):
    """patience=4: the 4th drifted window in a row starts exactly one run; the 3rd none, later ones none."""
    experiment = experiment_name("patience")
    monitor = monitor_of(pipeline, tracking_uri=mlflow_server.tracking_uri,
                         experiment=experiment, window_size=5, patience=4,
                         detector=MeanDetector())
    send_windows(monitor, "CDDD", 5)  # windows 0..3: a streak of 3
    runs = runs_in(client, experiment)
    assert runs == [], f"3 drifted windows in a row with patience=4 should start no run yet; got {describe(runs)}"
    fourth = send_windows(monitor, "D", 5)[0]
    runs = runs_in(client, experiment)
    assert len(runs) == 1, f"the 4th drifted window in a row (patience=4) should start one run; got {describe(runs)}"
    assert res(fourth, "run_id") == runs[0].info.run_id, (
        f"the result of the window that started the run should carry its id {runs[0].info.run_id}; "
        f"got {res(fourth, 'run_id')!r}")
    later = send_windows(monitor, "DDD", 5)
    runs = runs_in(client, experiment)
    assert len(runs) == 1, f"the same drift episode going on should start no second run; got {describe(runs)}"
    assert [res(r, "run_id") for r in later] == [None] * 3, "windows that start no run should have run_id None"


@pytest.mark.points(2)
@pytest.mark.covers("streak", "patience")
def test_a_clean_window_sets_the_streak_back_to_zero(pipeline, client, mlflow_server):
    """patience=2: D C D C D starts nothing (no two drifted windows in a row); then D D C D D: runs at 6 and 9."""
    experiment = experiment_name("streak")
    monitor = monitor_of(pipeline, tracking_uri=mlflow_server.tracking_uri,
                         experiment=experiment, window_size=3, patience=2,
                         detector=MeanDetector())
    send_windows(monitor, "DCDCD", 3)
    runs = runs_in(client, experiment)
    assert runs == [], (
        "drifted windows separated by clean ones never make a streak of 2: no run expected; "
        f"got {describe(runs)}")
    send_windows(monitor, "D", 3)  # window 5: the streak is 2 now
    runs = runs_in(client, experiment)
    assert [r.data.tags.get("window") for r in runs] == ["5"], (
        f"windows 4 and 5 drifted in a row (patience=2): one run at window 5 expected; got {describe(runs)}")


@pytest.mark.points(2)
@pytest.mark.covers("episode-reset", "one-run-per-episode")
def test_a_new_episode_after_a_clean_window_starts_a_new_run(pipeline, client, mlflow_server):
    """patience=2: D D D D C D D -> runs at windows 1 and 6, and only those."""
    experiment = experiment_name("episodes")
    monitor = monitor_of(pipeline, tracking_uri=mlflow_server.tracking_uri,
                         experiment=experiment, window_size=3, patience=2,
                         detector=MeanDetector())
    results = send_windows(monitor, "DDDDCDD", 3)
    runs = runs_in(client, experiment)
    assert [r.data.tags.get("window") for r in runs] == ["1", "6"], (
        "D D D D C D D with patience=2: one run for each episode, at windows 1 and 6; "
        f"got {describe(runs)}")
    started = [k for k, r in enumerate(results) if res(r, "run_id") is not None]
    assert started == [1, 6], f"run_id should be set on windows 1 and 6 only; got it on {started}"


@pytest.mark.points(3)
@pytest.mark.covers("run-experiment", "run-tags", "run-params", "run-metrics", "run-start-time", "window-drifted",
                    "result-drifted", "result-features", "result-scores")
def test_the_run_records_why_it_was_started(pipeline, client, mlflow_server):
    """The run: trigger=drift, its window, the drifted features sorted; window_size, patience; scores."""
    experiment = experiment_name("run")
    reference = pd.DataFrame({"income": [1.0, 2.0], "age": [3.0, 4.0], "zip": [5.0, 6.0]})  # not sorted
    monitor = pipeline.ProductionDriftMonitor(reference, tracking_uri=mlflow_server.tracking_uri,
                                              experiment=experiment, window_size=4, patience=2,
                                              detector=MeanDetector())
    assert client.experiment_id(experiment) is None
    first = results_list(monitor.observe(flags(4, income=0.2, age=0.3, zip=0.75)), what="observe()")
    # Only zip drifted: the window has drifted (at least one feature).
    assert res(first[0], "drifted") is True or res(first[0], "drifted") == True, (  # noqa: E712
        f"a window where one of three features drifted has drifted; got drifted={res(first[0], 'drifted')!r}")
    assert list(res(first[0], "drifted_features")) == ["zip"], (
        f"drifted_features should be ['zip']; got {res(first[0], 'drifted_features')!r}")
    started = now_ms()
    second = results_list(monitor.observe(flags(4, income=0.875, age=0.625, zip=0.25)), what="observe()")
    finished = now_ms()
    result = second[0]
    assert list(res(result, "drifted_features")) == ["age", "income"], (
        f"drifted_features should be the drifted names sorted, ['age', 'income']; got {res(result, 'drifted_features')!r}")
    scores = dict(res(result, "scores"))
    assert scores == {"income": 0.875, "age": 0.625, "zip": 0.25}, (
        f"scores should map each feature to the detector's score; got {scores}")
    runs = runs_in(client, experiment)
    assert len(runs) == 1, f"two drifted windows with patience=2 should start one run in {experiment!r}; got {describe(runs)}"
    run = runs[0]
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    expected_tags = {"trigger": "drift", "window": "1", "drifted_features": "age,income"}
    assert {k: tags.get(k) for k in expected_tags} == expected_tags, (
        f"the run's tags should include {expected_tags}; got {tags}")
    assert {k: run.data.params.get(k) for k in ("window_size", "patience")} == {"window_size": "4", "patience": "2"}, (
        f"the run's params should be window_size=4 and patience=2; got {run.data.params}")
    expected_metrics = {"drift_score.income": 0.875, "drift_score.age": 0.625, "drift_score.zip": 0.25}
    got_metrics = {k: run.data.metrics.get(k) for k in expected_metrics}
    assert got_metrics == expected_metrics, (
        f"the run's metrics should be window 1's scores {expected_metrics}; got {run.data.metrics}")
    assert res(result, "run_id") == run.info.run_id and res(result, "drifted") is not False
    assert started <= run.info.start_time <= finished, (
        f"the run's start time should be when the monitor started it, between {started} and {finished} "
        f"(ms since 1970); got {run.info.start_time}")


# -- metrics ----------------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.covers("metric-score", "metric-windows", "metric-drifted", "metric-runs", "registry",
                    "window-drifted")
def test_metrics_follow_every_window(pipeline, mlflow_server):
    """Gauges hold the last window's score of every feature; counters count windows, drifted windows, runs."""
    monitor = monitor_of(pipeline, tracking_uri=mlflow_server.tracking_uri,
                         experiment=experiment_name("metrics"), window_size=4,
                         patience=2, detector=MeanDetector())
    other = monitor_of(pipeline, window_size=4, detector=MeanDetector())  # its own registry: no clash
    plan = [  # (x, y) of each window, and whether it drifted
        (0.25, 0.125), (0.75, 0.375), (0.5, 0.625), (0.875, 0.9375), (0.375, 0.0625), (0.125, 0.5625),
    ]
    drifted = 0
    for k, (x, y) in enumerate(plan):
        monitor.observe(flags(4, x=x, y=y))
        drifted += int(x > 0.5 or y > 0.5)
        for name, value in (("x", x), ("y", y)):
            got = sample(monitor, "model_drift_score", {"feature": name})
            assert got == value, (
                f"after window {k}, model_drift_score{{feature=\"{name}\"}} should be that window's score "
                f"{value}; got {got}")
        counts = {name: sample(monitor, name) for name in ("model_drift_windows_total",
                                                            "model_drifted_windows_total")}
        assert counts == {"model_drift_windows_total": k + 1, "model_drifted_windows_total": drifted}, (
            f"after window {k} ({drifted} of them drifted, a window with one drifted feature included) "
            f"the counters should be {k + 1} and {drifted}; got {counts}")
    # Windows 1, 2, 3 drifted in a row (patience=2): one run, at window 2; window 5 starts none.
    assert sample(monitor, "model_retraining_runs_total") == 1, (
        f"model_retraining_runs_total should be 1; got {sample(monitor, 'model_retraining_runs_total')}")
    assert sample(monitor, "model_retraining_failures_total") in (0, 0.0), (
        "no attempt failed: model_retraining_failures_total should be 0; got "
        f"{sample(monitor, 'model_retraining_failures_total')}")
    assert sample(other, "model_drift_windows_total") == 0, (
        "a second monitor's metrics should live on its own registry (0 windows there); got "
        f"{sample(other, 'model_drift_windows_total')}")
    kinds = {name: sample_type(monitor, name) for name in (
        "model_drift_windows_total", "model_drifted_windows_total", "model_retraining_runs_total",
        "model_retraining_failures_total")}
    assert set(kinds.values()) == {"counter"}, (
        f"the four counts should be Prometheus counters (rate() and increase() rely on it); their types are {kinds}")
    # One call that completes three windows adds three windows.
    other.observe(flags(12, x=0.75, y=0.25))
    counts = {name: sample(other, name) for name in ("model_drift_windows_total", "model_drifted_windows_total")}
    assert counts == {"model_drift_windows_total": 3, "model_drifted_windows_total": 3}, (
        "one observe call that completes 3 windows (all drifted) should add 3 to each counter; got "
        f"{counts}")
    # The gauges follow the detector's result, not the reference's columns.
    derived = monitor_of(pipeline, window_size=4, detector=DerivedFeatureDetector())
    derived.observe(flags(4, x=0.75, y=0.25))
    got = {name: sample(derived, "model_drift_score", {"feature": name}) for name in ("x", "x_minus_y")}
    assert got == {"x": 0.75, "x_minus_y": 0.5}, (
        "with a detector reporting x and a derived feature x_minus_y (not a reference column), "
        f"model_drift_score should have those two features with scores 0.75 and 0.5; got {got}")


# -- the detector -----------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.covers("detector-default", "ks-detector")
def test_default_detector_scores_are_scipy_ks_statistics(pipeline):
    """Without a detector: scores are ks_2samp's statistic, and a feature drifts when p < 0.01."""
    reference = reference_frame(1000)
    monitor = monitor_of(pipeline, reference, window_size=200, patience=5)
    windows = [calm_window(0, 200), shifted_window(1, 200, shift=0.6), shifted_window(2, 200, shift=0.28)]
    p_boundary = ks(reference, windows[2], "x").pvalue
    assert 0.01 < p_boundary < 0.05, p_boundary  # the case tells alpha 0.01 from 0.05
    for k, window in enumerate(windows):
        got = results_list(monitor.observe(window), what="observe()")
        assert len(got) == 1
        scores = dict(res(got[0], "scores"))
        expected_drifted = []
        for name in ("x", "y"):
            expected = ks(reference, window, name)
            assert_close(scores.get(name), expected.statistic,
                         what=f"window {k}: the default detector's score of {name!r} (scipy ks_2samp statistic)")
            got_gauge = sample(monitor, "model_drift_score", {"feature": name})
            assert_close(got_gauge, expected.statistic, what=f"window {k}: model_drift_score{{feature={name!r}}}")
            if expected.pvalue < 0.01:
                expected_drifted.append(name)
        assert list(res(got[0], "drifted_features")) == expected_drifted, (
            f"window {k}: with the default detector a feature drifts when ks_2samp's p-value is below 0.01 "
            f"(p = {ks(reference, window, 'x').pvalue:.3g} for x); expected {expected_drifted}, "
            f"got {res(got[0], 'drifted_features')!r}")


@pytest.mark.points(1)
@pytest.mark.covers("detector-interface")
def test_detector_results_may_be_objects(pipeline):
    """A detector may return objects with .score and .drifted instead of dicts."""
    monitor = monitor_of(pipeline, window_size=3, detector=MeanDetector(as_objects=True))
    got = results_list(monitor.observe(flags(3, x=0.75, y=0.25)), what="observe()")
    assert len(got) == 1 and list(res(got[0], "drifted_features")) == ["x"], (
        "a detector returning objects with .score and .drifted: x (score 0.75) drifted, y not; got "
        f"{[res(r, 'drifted_features') for r in got]}")
    assert sample(monitor, "model_drift_score", {"feature": "x"}) == 0.75


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("reference-invalid", "settings-invalid")
def test_bad_reference_and_settings_are_refused(pipeline):
    """TypeError for a reference that is no DataFrame; ValueError for an empty one and bad settings."""
    good = reference_frame(20)
    uri = f"http://127.0.0.1:{free_port()}"
    with learner_error(TypeError, what="ProductionDriftMonitor(a numpy array)"):
        pipeline.ProductionDriftMonitor(good.to_numpy(), tracking_uri=uri)
    for empty in (good.iloc[0:0], pd.DataFrame(index=range(3))):
        with learner_error(ValueError, what=f"ProductionDriftMonitor(a reference of shape {empty.shape})"):
            pipeline.ProductionDriftMonitor(empty, tracking_uri=uri)
    for name, value in [("window_size", 0), ("patience", 0), ("sample_rate", 0.0), ("sample_rate", 1.5),
                        ("sample_rate", -0.2), ("sample_rate", float("nan"))]:
        with learner_error(ValueError, what=f"ProductionDriftMonitor({name}={value})") as raised:
            pipeline.ProductionDriftMonitor(good, tracking_uri=uri, **{name: value})
        assert name in str(raised.value), f"the error for {name}={value} should name {name!r}; got {raised.value}"
    # The boundaries themselves are fine.
    pipeline.ProductionDriftMonitor(good, tracking_uri=uri, window_size=1, patience=1, sample_rate=1.0)


# -- when the tracking server fails -----------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.covers("tracking-down", "retry", "metric-failures", "init-offline")
def test_serving_goes_on_when_the_tracking_server_fails(pipeline, client, mlflow_server):
    """An unreachable or failing server: observe() does not raise, counts the failure, retries next window."""
    # Nobody listens: creating the monitor and checking windows still work.
    dead = monitor_of(pipeline, window_size=3, patience=1, detector=MeanDetector())
    results = send_windows(dead, "CDD", 3)
    assert [res(r, "run_id") for r in results] == [None] * 3
    assert sample(dead, "model_retraining_failures_total") == 2, (
        "with nobody answering at tracking_uri, each of the 2 drifted windows (patience=1) tries once and fails: "
        f"model_retraining_failures_total should be 2; got {sample(dead, 'model_retraining_failures_total')}")
    assert sample(dead, "model_retraining_runs_total") in (0, 0.0)
    # A web server that is not MLflow (a wrong URL): answers 200 with a page, not MLflow's JSON.
    with TrackingProxy(mlflow_server.tracking_uri, mode="junk") as proxy:
        wrong = monitor_of(pipeline, tracking_uri=proxy.url,
                           experiment=experiment_name("junk"), window_size=3, patience=1,
                           detector=MeanDetector())
        send_windows(wrong, "D", 3)
        assert proxy.requests >= 1, "the drifted window (patience=1) should try to start a run"
    assert sample(wrong, "model_retraining_failures_total") == 1, (
        "a tracking_uri answering with an HTML page instead of MLflow's JSON: the attempt failed and should be "
        f"counted; model_retraining_failures_total is {sample(wrong, 'model_retraining_failures_total')}")
    # A server that answers 503, then comes back within the same episode.
    experiment = experiment_name("down")
    with TrackingProxy(mlflow_server.tracking_uri, mode="error") as proxy:
        monitor = monitor_of(pipeline, tracking_uri=proxy.url,
                             experiment=experiment, window_size=3, patience=2,
                             detector=MeanDetector())
        assert proxy.requests == 0, "creating the monitor should not contact the tracking server"
        send_windows(monitor, "DDD", 3)  # windows 1 and 2 try and fail
        assert sample(monitor, "model_retraining_failures_total") == 2, (
            "a server answering 503 at windows 1 and 2: model_retraining_failures_total should be 2; got "
            f"{sample(monitor, 'model_retraining_failures_total')}")
        proxy.mode = "up"
        results = send_windows(monitor, "DD", 3)  # window 3 retries and succeeds, window 4 starts none
    runs = runs_in(client, experiment)
    assert [r.data.tags.get("window") for r in runs] == ["3"], (
        "the server back at window 3 of the same episode: exactly one run, started at window 3; "
        f"got {describe(runs)}")
    assert res(results[0], "run_id") == runs[0].info.run_id and res(results[1], "run_id") is None
    assert sample(monitor, "model_retraining_runs_total") == 1
    assert sample(monitor, "model_retraining_failures_total") == 2


@pytest.mark.points(2)
@pytest.mark.covers("timeout", "tracking-down")
def test_an_attempt_gives_up_after_the_timeout(pipeline, mlflow_server):
    """A server that accepts and never answers: observe() returns after about `timeout` seconds."""
    with TrackingProxy(mlflow_server.tracking_uri, mode="hang") as proxy:
        monitor = monitor_of(pipeline, tracking_uri=proxy.url,
                             experiment=experiment_name("hang"), window_size=3, patience=1,
                             detector=MeanDetector(), timeout=1.0)
        started = time.monotonic()
        results = results_list(monitor.observe(flags(3, x=0.9, y=0.1)), what="observe()")
        elapsed = time.monotonic() - started
        assert proxy.requests >= 1, "the drifted window (patience=1) should try to start a run"
    assert elapsed < 3.5, (
        f"with timeout=1.0 and a server that never answers, observe() should give up within about 1 s; "
        f"it took {elapsed:.1f} s")
    assert len(results) == 1 and res(results[0], "run_id") is None
    assert sample(monitor, "model_retraining_failures_total") == 1, (
        "the attempt that timed out should be counted in model_retraining_failures_total; got "
        f"{sample(monitor, 'model_retraining_failures_total')}")
