"""Graders for CE4.1, part 2: ``instrument`` and the middleware, on the graders' test app.

The test app (``HARNESS_SOURCE`` in ce4_1_support.py) runs under a real uvicorn with the
learner's metrics.py. Each check sends a known set of requests to routes no other check
uses and compares /metrics before and after: the difference is exactly what was sent.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import prometheus_client
import pytest
from ce4_1_support import (
    STREAM_CHUNKS,
    STREAM_PAUSE,
    family_type,
    parse,
    promtool_check,
    scrape,
    wait_for,
)

REQUESTS = "http_requests_total"
LATENCY = "http_request_duration_seconds"
IN_FLIGHT = "http_requests_in_flight"


@pytest.fixture(scope="module")
def harness(servers):
    """The test app's URL, once it answers."""
    return servers["harness"].url


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=15)


def delta(before, after, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def idle_in_flight(url: str) -> float:
    """The in-flight gauge with nothing but the scrape itself in flight: 0, or 1 when /metrics counts itself."""
    __tracebackhide__ = True
    value = scrape(url).value(IN_FLIGHT)
    assert value in (0, 1), (
        f"{IN_FLIGHT} should be 0 (or 1, the scrape itself) while no other request is in flight; got {value:g}")
    return value


@pytest.mark.points(3)
@pytest.mark.covers("endpoint-template", "requests-total")
def test_requests_are_counted_by_route_template(harness):
    """Five requests to /items/<new id> add 5 to the template's series and create no series per id."""
    ids = [uuid.uuid4().hex for _ in range(5)]
    before = scrape(harness)
    for item in ids:
        assert get(f"{harness}/items/{item}").status_code == 200
    after = scrape(harness)
    leaked = {v for v in after.label_values(REQUESTS, "endpoint") | after.label_values(f"{LATENCY}_count", "endpoint")
              if any(i in v for i in ids)}
    assert not leaked, (
        f"the endpoint label should be the route template \"/items/{{item_id}}\", not the path: "
        f"each new id made a new series, e.g. {sorted(leaked)[:2]}")
    got = delta(before, after, REQUESTS, endpoint="/items/{item_id}", status="2xx")
    assert got == 5, (
        f'{REQUESTS}{{endpoint="/items/{{item_id}}",status="2xx"}} should grow by 5 after 5 requests; '
        f"it grew by {got:g}")
    got = delta(before, after, f"{LATENCY}_count", endpoint="/items/{item_id}")
    assert got == 5, f'{LATENCY}_count{{endpoint="/items/{{item_id}}"}} should grow by 5; it grew by {got:g}'
    # The right path with a method the route does not allow: 405, still the route's template.
    before = scrape(harness)
    assert httpx.delete(f"{harness}/items/{ids[0]}", timeout=10).status_code == 405
    after = scrape(harness)
    got = delta(before, after, REQUESTS, endpoint="/items/{item_id}", status="4xx")
    assert got == 1, (
        f'DELETE /items/<id> (405: the path matches the route, the method does not) should count under '
        f'{REQUESTS}{{endpoint="/items/{{item_id}}",status="4xx"}}; that series grew by {got:g}')


@pytest.mark.points(3)
@pytest.mark.covers("status-label", "latency-all-requests")
def test_status_label_is_the_status_class(harness):
    """204 and 200-class answers are "2xx", 302 "3xx", 418 "4xx", 503 "5xx", each timed."""
    sent = {204: 2, 302: 1, 418: 3, 503: 2}
    before = scrape(harness)
    for code, times in sent.items():
        for _ in range(times):
            assert get(f"{harness}/status/{code}").status_code == code
    after = scrape(harness)
    expected = {"2xx": 2, "3xx": 1, "4xx": 3, "5xx": 2}
    got = {cls: delta(before, after, REQUESTS, endpoint="/status/{code}", status=cls) for cls in expected}
    assert got == expected, (
        f'{REQUESTS}{{endpoint="/status/{{code}}"}} by status should grow by {expected} after answers '
        f"204 ×2, 302, 418 ×3, 503 ×2; it grew by {got}")
    others = {dict(k).get("status") for k in after.series(REQUESTS)} - {"1xx", "2xx", "3xx", "4xx", "5xx"}
    assert not others, f"the status label should be a class like \"4xx\", not a code; found {sorted(others)}"
    got = delta(before, after, f"{LATENCY}_count", endpoint="/status/{code}")
    assert got == 8, f'{LATENCY}_count{{endpoint="/status/{{code}}"}} should grow by 8 (every answer timed); it grew by {got:g}'


@pytest.mark.points(3)
@pytest.mark.covers("unknown-path")
def test_unknown_paths_share_one_endpoint_value(harness, metrics):
    """Six requests to paths no route matches all land in the one series endpoint=OTHER_ENDPOINT."""
    other = metrics.OTHER_ENDPOINT
    paths = [f"/nowhere/{uuid.uuid4().hex}" for _ in range(4)] + [f"/{uuid.uuid4().hex}" for _ in range(2)]
    before = scrape(harness)
    for path in paths:
        assert get(f"{harness}{path}").status_code == 404
    after = scrape(harness)
    new = after.label_values(REQUESTS, "endpoint") - before.label_values(REQUESTS, "endpoint")
    assert new <= {other}, (
        f"requests to unknown paths should all use the endpoint label {other!r}; new endpoint values: "
        f"{sorted(new)[:3]}")
    got = delta(before, after, REQUESTS, endpoint=other, status="4xx")
    assert got == 6, (
        f'{REQUESTS}{{endpoint="{other}",status="4xx"}} should grow by 6 after 6 requests to unknown paths; '
        f"it grew by {got:g}")


@pytest.mark.points(2)
@pytest.mark.covers("latency-buckets")
def test_latency_buckets_resolve_the_100ms_objective(harness):
    """The latency buckets include 0.1 and a bound on each side of it within [0.05, 0.2], all positive."""
    assert get(f"{harness}/items/bucket-check").status_code == 200
    bounds = sorted(le for le in scrape(harness).buckets(LATENCY, endpoint="/items/{item_id}") if le != float("inf"))
    assert bounds, f"{LATENCY} should have buckets for the endpoint /items/{{item_id}}; found none"
    assert 0.1 in bounds and any(0.05 <= b < 0.1 for b in bounds) and any(0.1 < b <= 0.2 for b in bounds), (
        "the latency buckets should include 0.1, one bound in [0.05, 0.1) and one in (0.1, 0.2], "
        f"to tell a request at 120 ms from one at 240 ms; got {bounds}")
    assert bounds[0] > 0, f"every latency bucket bound should be positive (a duration never is below 0); got {bounds}"


@pytest.mark.points(3)
@pytest.mark.covers("latency-whole-response")
def test_streamed_body_is_timed_to_its_last_byte(harness):
    """A body streamed over 0.3 s is timed at 0.3 s or more, not at the moment its headers left."""
    before = scrape(harness)
    took = []
    for _ in range(2):
        started = time.perf_counter()
        response = get(f"{harness}/stream")
        took.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.text.count("chunk") == STREAM_CHUNKS
    after = scrape(harness)
    shortest = STREAM_CHUNKS * STREAM_PAUSE
    count = delta(before, after, f"{LATENCY}_count", endpoint="/stream")
    assert count == 2, f'{LATENCY}_count{{endpoint="/stream"}} should grow by 2; it grew by {count:g}'
    total = delta(before, after, f"{LATENCY}_sum", endpoint="/stream")
    assert 2 * shortest - 0.005 <= total <= sum(took) + 0.005, (
        f"two streamed answers, each sending its body over {shortest:g} s (the client waited "
        f"{took[0]:.3f} s and {took[1]:.3f} s), should add between {2 * shortest:g} and {sum(took):.3f} s "
        f"to {LATENCY}_sum; it added {total:.4f} s. Time until the last body message is sent, "
        "not until the response starts.")


@pytest.mark.points(3)
@pytest.mark.covers("exception-5xx", "latency-all-requests", "in-flight")
def test_failing_handler_is_counted_as_5xx(harness):
    """A handler that raises (before or after its answer started): counted "5xx", timed, no longer in flight."""
    idle = idle_in_flight(harness)
    before = scrape(harness)
    for _ in range(3):
        response = get(f"{harness}/boom")
        assert response.status_code == 500 and "handled_by" in response.text, (
            "the handler's exception should reach the app's own error handler (answer 500 "
            f"{{\"handled_by\": ...}}): re-raise it after counting; got {response.status_code} {response.text[:200]!r}")
    # A stream that fails half-way: the status line said 200, then the connection broke.
    with contextlib.suppress(httpx.HTTPError):
        get(f"{harness}/stream-fails")
    after = scrape(harness)
    got = delta(before, after, REQUESTS, endpoint="/boom", status="5xx")
    assert got == 3, f'{REQUESTS}{{endpoint="/boom",status="5xx"}} should grow by 3 after 3 failures; it grew by {got:g}'
    got = delta(before, after, f"{LATENCY}_count", endpoint="/boom")
    assert got == 3, f'{LATENCY}_count{{endpoint="/boom"}} should grow by 3 (failed requests are timed too); it grew by {got:g}'
    got = {s: delta(before, after, REQUESTS, endpoint="/stream-fails", status=s) for s in ("2xx", "5xx")}
    assert got == {"2xx": 0, "5xx": 1}, (
        "a streamed answer whose handler raised half-way (after its 200 status line was sent) should count "
        f'once as "5xx", not "2xx": it failed; {REQUESTS}{{endpoint="/stream-fails"}} grew by {got}')
    assert after.value(IN_FLIGHT) == idle, (
        f"{IN_FLIGHT} should be back at {idle:g} after 4 failed requests; got {after.value(IN_FLIGHT):g} "
        "(decrement it whatever way the request ends: try/finally)")


@pytest.mark.points(3)
@pytest.mark.covers("in-flight")
def test_in_flight_counts_requests_being_handled(harness):
    """Three requests held open show as 3 in flight; once answered, the gauge is back where it was."""
    idle = idle_in_flight(harness)
    with httpx.Client(timeout=20) as client, ThreadPoolExecutor(max_workers=3) as pool:
        held = [pool.submit(lambda: httpx.get(f"{harness}/hold", timeout=20)) for _ in range(3)]
        try:
            entered = wait_for(lambda: client.get(f"{harness}/held").json()["entered"] >= 3, timeout=10)
            assert entered, "the graders' three held requests did not reach the app within 10 s"
            during = scrape(harness).value(IN_FLIGHT)
        finally:
            client.post(f"{harness}/release")
        codes = [f.result().status_code for f in held]
    assert codes == [200] * 3, f"the held requests should be answered 200 once released; got {codes}"
    assert during - idle == 3, (
        f"{IN_FLIGHT} should be {idle + 3:g} while 3 requests are held open (and {idle:g} when idle); "
        f"got {during:g}")
    after = scrape(harness).value(IN_FLIGHT)
    assert after == idle, f"{IN_FLIGHT} should be back at {idle:g} once they are answered; got {after:g}"


@pytest.mark.points(2)
@pytest.mark.covers("own-registry")
def test_metrics_live_on_the_registry_given(harness):
    """ServingMetrics(registry) defines its metrics on that registry, and none on the global one."""
    names = ("http_requests_total", "http_request_duration_seconds", "http_requests_in_flight",
             "model_prediction_confidence", "model_predictions_total", "model_info")
    given = parse(get(f"{harness}/given-registry").text, "the exposition of the registry given")
    missing = [name for name in names if family_type(given, name) is None]
    assert not missing, (
        f"ServingMetrics(registry) should define every metric on the registry it is given; {missing} are not on it")
    found = parse(get(f"{harness}/global-registry").text, "prometheus_client.REGISTRY's exposition")
    leaked = [name for name in names if family_type(found, name) is not None]
    assert not leaked, (
        f"ServingMetrics(registry) should define its metrics on that registry; {leaked} are on "
        "prometheus_client's global REGISTRY instead")


@pytest.mark.points(2)
@pytest.mark.covers("routes-at-zero")
def test_every_route_starts_at_zero(harness):
    """A route never requested already has its 2xx, 4xx and 5xx request series, at 0."""
    found = scrape(harness)
    missing = [s for s in ("2xx", "4xx", "5xx") if not found.has(REQUESTS, endpoint="/never/{thing}", status=s)]
    assert not missing, (
        f'{REQUESTS}{{endpoint="/never/{{thing}}"}} should exist at 0 for 2xx, 4xx and 5xx before any request '
        f"(so rate() sees the first one); missing: {missing}")
    values = {s: found.value(REQUESTS, endpoint="/never/{thing}", status=s) for s in ("2xx", "4xx", "5xx")}
    assert set(values.values()) == {0.0}, f"a route never requested should count 0; got {values}"


@pytest.mark.points(3)
@pytest.mark.covers("metrics-route", "exposition-valid", "requests-total", "latency-histogram")
def test_metrics_route_serves_valid_text_with_the_documented_labels(harness):
    """GET /metrics answers text/plain that promtool accepts, each series once, with the documented labels."""
    assert get(f"{harness}/items/labels-check").status_code == 200
    response = get(f"{harness}/metrics")
    kind = response.headers.get("content-type", "").replace(" ", "")
    assert (kind.startswith("text/plain") and ";version=" in kind) or kind.startswith("application/openmetrics-text"), (
        "GET /metrics should answer with the content type exposition() gives, Prometheus's text format "
        f"with its version ({prometheus_client.CONTENT_TYPE_LATEST!r}), not a bare text/plain; got {kind!r}")
    found = parse(response.text, "GET /metrics")
    assert not found.duplicates, f"each series should be listed once; repeated: {found.duplicates[:3]}"
    label_sets = {frozenset(dict(k)) for k in found.series(REQUESTS)}
    assert label_sets == {frozenset({"endpoint", "status"})}, (
        f"{REQUESTS} should have exactly the labels endpoint and status; got {sorted(map(sorted, label_sets))}")
    label_sets = {frozenset(dict(k)) for k in found.series(f"{LATENCY}_bucket")}
    assert label_sets == {frozenset({"endpoint", "le"})}, (
        f"{LATENCY} should have exactly the label endpoint (and le); got {sorted(map(sorted, label_sets))}")
    problems = promtool_check(response.text)
    assert not problems, f"`promtool check metrics` should find nothing in GET /metrics; it says:\n{problems}"
