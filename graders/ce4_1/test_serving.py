"""Graders for CE4.1, part 3: the provided serving.py with the learner's metrics, live.

* Two workers: ``uvicorn --workers 2`` with ``PROMETHEUS_MULTIPROC_DIR`` set; the graders
  make sure both workers answered, and any one scrape must total every worker's requests.
* One worker, scraped every second by a real Prometheus: a known mix of requests (good,
  refused with 422, failing in the model with 500, slow by a known amount, with unique user
  ids, to unknown paths); once Prometheus has scraped after the last answer, the raw counters
  it stores must equal what was sent (raw values: ``increase()`` extrapolates), the classes and
  confidences must equal scikit-learn's on the same rows, and ``histogram_quantile(0.99, ...)``
  must land where the client's own timings put it.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from ce4_1_support import (
    BOOM,
    CLASSES,
    MODEL_NAME,
    MODEL_VERSION,
    PROMETHEUS_JOB,
    SLOW,
    SLOW_SECONDS,
    bucket_of,
    promtool_check,
    scrape,
    wait_for,
)

from workbook.checks import assert_close

pytestmark = pytest.mark.timeout(60)
JOB = f'job="{PROMETHEUS_JOB}"'
USER_ROUTE = "/users/{user_id}/predict"


def post(client, url: str, body: dict) -> tuple[int, float]:
    started = time.perf_counter()
    response = client.post(url, json=body)
    return response.status_code, time.perf_counter() - started


# -- two workers, multiprocess mode -----------------------------------------------------------


@pytest.mark.points(5)
@pytest.mark.covers("multiprocess-exposition", "multiprocess-gauges", "no-push")
def test_two_workers_total_every_request_exactly(servers):
    """Under two workers, one scrape counts both workers' requests; each gauge is one series."""
    url = servers["workers"].url
    pids: dict[int, int] = {}
    sent = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        # Four at once, each on a new connection, until both workers have answered 3 or more.
        while (len(pids) < 2 or min(pids.values()) < 3) and sent < 400:
            for answer in pool.map(lambda _: httpx.get(f"{url}/health", timeout=10), range(4)):
                assert answer.status_code == 200, f"GET /health should answer 200; got {answer.status_code}"
                pid = answer.json()["worker"]
                pids[pid] = pids.get(pid, 0) + 1
                sent += 1
    assert len(pids) == 2, f"the graders could not reach both workers in {sent} requests (pids {pids})"
    rows = servers.model.rows[:9]
    with httpx.Client(timeout=15) as client:
        codes = [client.post(f"{url}/predict", json={"features": r.tolist()}).status_code for r in rows]
    assert codes == [200] * 9, f"POST /predict should answer 200 under two workers; got {codes}"
    for attempt in range(3):  # three scrapes, whichever worker answers each
        found = scrape(url)
        got = found.value("http_requests_total", endpoint="/health", status="2xx")
        assert got == sent, (
            f'http_requests_total{{endpoint="/health",status="2xx"}} should be {sent} in any scrape: the '
            f"graders sent {sent} requests, {pids} by worker pid; scrape {attempt + 1} says {got:g}. "
            "In multiprocess mode, collect with MultiProcessCollector on a new registry.")
        classes, _ = servers.model.expected(rows)
        by_class = {dict(k)["class"]: v for k, v in found.series("model_predictions_total").items()}
        expected = {str(c): float(classes.count(str(c))) for c in CLASSES}
        assert by_class == expected, f"model_predictions_total by class should be {expected}; got {by_class}"
        in_flight = found.series("http_requests_in_flight")
        assert len(in_flight) == 1 and next(iter(in_flight.values())) in (0, 1), (
            "http_requests_in_flight should be one series (no pid label: multiprocess_mode 'livesum') "
            f"at 0 (or 1, the scrape itself) when idle; got {[(dict(k), v) for k, v in in_flight.items()]}")
        info = found.series("model_info")
        assert info == {(("name", MODEL_NAME), ("version", MODEL_VERSION)): 1.0}, (
            f"model_info should be one series {{name=\"{MODEL_NAME}\", version=\"{MODEL_VERSION}\"}} at 1 "
            f"under two workers (a gauge with multiprocess_mode 'max'); got {[(dict(k), v) for k, v in info.items()]}")
        assert not found.duplicates, f"each series should be listed once; repeated: {found.duplicates[:3]}"


# -- one worker, scraped by Prometheus --------------------------------------------------------


class Traffic:
    """What the graders sent, and what Prometheus said before and after."""

    def __init__(self):
        self.before: dict[str, list[dict]] = {}
        self.good_rows: list[np.ndarray] = []  # rows answered with a prediction, slow ones included
        self.predict_times: list[float] = []  # client-side seconds of every /predict request
        self.user_ids: list[str] = []
        self.unknown: list[str] = []


def query(prometheus, promql: str) -> dict[tuple, float]:
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in prometheus.query(promql)}


def one(prometheus, promql: str) -> float | None:
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def traffic(servers, prometheus):
    """A known mix of requests to the one-worker service, and a Prometheus scrape after the last answer."""
    url = servers["serving"].url
    up = wait_for(lambda: one(prometheus, f"up{{{JOB}}}") == 1, timeout=20, interval=0.1)
    assert up, f"Prometheus did not scrape the service at {url} within 20 s"
    sent = Traffic()
    sent.before = {name: prometheus.query(f"{name}{{{JOB}}}")
                   for name in ("http_requests_total", "model_predictions_total")}
    rows = servers.model.rows
    good, users = rows[:60], rows[60:72]
    slow = rows[72:76].copy()
    slow[:, 0] = SLOW
    boom = rows[76:79].copy()
    boom[:, 0] = BOOM
    sent.good_rows = [*good, *users, *slow]
    sent.user_ids = [uuid.uuid4().hex for _ in users]
    sent.unknown = [f"/nope/{uuid.uuid4().hex}" for _ in range(7)]
    with httpx.Client(timeout=20) as client, ThreadPoolExecutor(max_workers=8) as pool:
        def predict(row):
            return post(client, f"{url}/predict", {"features": row.tolist()})

        answers = list(pool.map(predict, [*good, *slow]))
        assert [c for c, _ in answers] == [200] * 64, (
            f"POST /predict should answer 200 for good rows; got {[c for c, _ in answers]}")
        sent.predict_times += [t for _, t in answers]
        bad = list(pool.map(lambda i: post(client, f"{url}/predict", {"features": "not numbers"}), range(5)))
        assert [c for c, _ in bad] == [422] * 5, f"a body that is not numbers should get 422; got {bad}"
        # uvicorn closes a connection whose request raised: those go on connections of their own.
        failed = list(pool.map(lambda row: post(httpx, f"{url}/predict", {"features": row.tolist()}), boom))
        assert [c for c, _ in failed] == [500] * 3, f"a row the model fails on should get 500; got {failed}"
        sent.predict_times += [t for _, t in bad + failed]
        codes = list(pool.map(lambda p: client.post(f"{url}/users/{p[0]}/predict",
                                                    json={"features": p[1].tolist()}).status_code,
                              zip(sent.user_ids, users, strict=True)))
        assert codes == [200] * 12, f"POST /users/<id>/predict should answer 200; got {codes}"
        codes = list(pool.map(lambda p: client.get(f"{url}{p}").status_code, sent.unknown))
        assert codes == [404] * 7, f"unknown paths should get 404; got {codes}"
    done = time.time()
    scraped = wait_for(lambda: (one(prometheus, f"timestamp(up{{{JOB}}})") or 0) > done + 0.01,
                       timeout=10, interval=0.1)
    assert scraped, "Prometheus did not scrape the service again within 10 s of the last request"
    return sent


@pytest.mark.points(2)
@pytest.mark.covers("classes-at-zero", "routes-at-zero")
def test_first_scrape_has_every_series_at_zero(traffic):
    """Before any prediction, Prometheus already stores every class and every route's statuses at 0."""
    classes = {r["metric"].get("class"): float(r["value"][1]) for r in traffic.before["model_predictions_total"]}
    assert classes == {str(c): 0.0 for c in CLASSES}, (
        f"before any prediction, model_predictions_total should exist at 0 for each class {list(CLASSES)}; "
        f"Prometheus stored {classes}")
    requests = {(r["metric"].get("endpoint"), r["metric"].get("status")): float(r["value"][1])
                for r in traffic.before["http_requests_total"]}
    for endpoint in ("/predict", USER_ROUTE):
        for status in ("2xx", "4xx", "5xx"):
            assert requests.get((endpoint, status)) == 0.0, (
                f'before any request, http_requests_total{{endpoint="{endpoint}",status="{status}"}} should '
                f"exist at 0; Prometheus stored {requests.get((endpoint, status))}")


@pytest.mark.points(4)
@pytest.mark.covers("requests-total", "status-label", "latency-all-requests")
def test_request_counts_in_prometheus_are_exact(prometheus, traffic):
    """Prometheus's raw counters equal the requests sent: 64 × 2xx, 5 × 4xx, 3 × 5xx, 12 per-user."""
    expected = {("/predict", "2xx"): 64, ("/predict", "4xx"): 5, ("/predict", "5xx"): 3, (USER_ROUTE, "2xx"): 12,
                (USER_ROUTE, "4xx"): 0, (USER_ROUTE, "5xx"): 0}
    stored = {(dict(k).get("endpoint"), dict(k).get("status")): v
              for k, v in query(prometheus, f"http_requests_total{{{JOB}}}").items()}
    got = {key: stored.get(key, 0.0) for key in expected}
    assert got == {k: float(v) for k, v in expected.items()}, (
        f"http_requests_total in Prometheus should be {expected} (endpoint, status); got {got}")
    count = one(prometheus, f'http_request_duration_seconds_count{{{JOB},endpoint="/predict"}}')
    assert count == 72, (
        "http_request_duration_seconds_count{endpoint=\"/predict\"} should be 72: every request timed, "
        f"refused and failed ones too; Prometheus stored {count}")


@pytest.mark.points(4)
@pytest.mark.covers("predictions-by-class", "confidence-histogram")
def test_predictions_and_confidences_match_the_model(prometheus, servers, traffic):
    """Predictions by class and the confidence histogram's sum and count equal scikit-learn's answers."""
    classes, confidences = servers.model.expected(np.array(traffic.good_rows))
    expected = {str(c): float(classes.count(str(c))) for c in CLASSES}
    got = {dict(k).get("class"): v for k, v in query(prometheus, f"model_predictions_total{{{JOB}}}").items()}
    assert got == expected, f"model_predictions_total by class should be {expected} (the model's predict); got {got}"
    count = one(prometheus, f"model_prediction_confidence_count{{{JOB}}}")
    assert count == len(confidences), (
        f"model_prediction_confidence_count should be {len(confidences)}, one per prediction; got {count}")
    assert_close(one(prometheus, f"model_prediction_confidence_sum{{{JOB}}}"), float(confidences.sum()),
                 what="model_prediction_confidence_sum (the max predict_proba of each predicted row, added up)",
                 rel=1e-9)


@pytest.mark.points(4)
@pytest.mark.covers("latency-histogram", "latency-buckets")
def test_p99_latency_agrees_with_client_timings(prometheus, traffic):
    """histogram_quantile(0.99) lands in the bucket the slow requests fell in, and the sum fits the clients' timings."""
    bounds = sorted(float(r["metric"]["le"]) for r in prometheus.query(
        f'http_request_duration_seconds_bucket{{{JOB},endpoint="/predict"}}') if r["metric"]["le"] != "+Inf")
    p99 = one(prometheus, 'histogram_quantile(0.99, sum by (le) '
                          f'(http_request_duration_seconds_bucket{{{JOB},endpoint="/predict"}}))')
    # 4 of the 72 requests took at least SLOW_SECONDS inside the model, so the 4 longest durations
    # are at least that, and none is longer than the longest wait of a client. Rank 0.99 × 72
    # is among those 4: the quantile lies in a bucket between those two times.
    low = bucket_of(bounds, SLOW_SECONDS)[0]
    longest = max(traffic.predict_times)
    high = bucket_of(bounds, longest)[1]
    assert p99 is not None and low <= p99 <= high, (
        f"histogram_quantile(0.99) over /predict should be between {low:g} and {high:g} s: 4 of 72 requests "
        f"took at least {SLOW_SECONDS:g} s in the model and no client waited more than {longest:.3f} s; "
        f"Prometheus says {p99} (durations in seconds?)")
    total = one(prometheus, f'http_request_duration_seconds_sum{{{JOB},endpoint="/predict"}}')
    assert total is not None and 4 * SLOW_SECONDS <= total <= sum(traffic.predict_times), (
        f"http_request_duration_seconds_sum over /predict should be between {4 * SLOW_SECONDS:g} s (the slow "
        f"requests alone) and {sum(traffic.predict_times):.3f} s (what the clients waited in all); got {total}")


@pytest.mark.points(3)
@pytest.mark.covers("endpoint-template", "unknown-path")
def test_user_ids_and_unknown_paths_add_no_series(prometheus, metrics, traffic):
    """12 user ids and 7 unknown paths: no series names any of them; they count under two endpoint values."""
    endpoints = {dict(k).get("endpoint") for k in query(prometheus, f"http_requests_total{{{JOB}}}")}
    endpoints |= {dict(k).get("endpoint") for k in query(prometheus, f"http_request_duration_seconds_count{{{JOB}}}")}
    leaked = sorted(e for e in endpoints if any(i in (e or "") for i in traffic.user_ids + traffic.unknown))
    assert not leaked, f"no series should carry a user id or a raw path in its endpoint label; found {leaked[:3]}"
    user = one(prometheus, f'http_requests_total{{{JOB},endpoint="{USER_ROUTE}",status="2xx"}}')
    assert user == 12, f'http_requests_total{{endpoint="{USER_ROUTE}",status="2xx"}} should be 12; got {user}'
    other = one(prometheus, f'http_requests_total{{{JOB},endpoint="{metrics.OTHER_ENDPOINT}",status="4xx"}}')
    assert other == 7, (
        f'http_requests_total{{endpoint="{metrics.OTHER_ENDPOINT}",status="4xx"}} should be 7 (the unknown paths); got {other}')


@pytest.mark.points(2)
@pytest.mark.covers("exposition-valid", "metrics-route")
def test_service_metrics_pass_promtool(servers, traffic):
    """The service's /metrics, after the traffic, is clean under promtool and lists each series once."""
    found = scrape(servers["serving"].url)
    assert not found.duplicates, f"each series should be listed once; repeated: {found.duplicates[:3]}"
    problems = promtool_check(found.text)
    assert not problems, f"`promtool check metrics` should find nothing in the service's /metrics; it says:\n{problems}"
