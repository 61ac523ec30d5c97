"""Graders for AP3.2's comparison harness (compare.py).

The harness is run against the graders' own reference servers: a REST app under a real
uvicorn process that counts the requests it answers, and a serverless handler that logs
each invocation (and takes a fixed 0.3 s to load its model). So every number the harness
reports is checked against what the servers saw, against numpy on the raw latencies it
records, against the grader's wall clock, and against the cost formulas written out here.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from unittest import mock

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from ap3_2_support import (
    COLD_DELAY_S,
    FAILING_HANDLER,
    HANDLER,
    REST_APP,
    rows,
    slow_model,
    train_model,
)

from workbook.sealed import learner_getenv
from workbook.services.asgi import serve_asgi

COLUMNS = ["strategy", "count", "elapsed_s", "throughput_per_s", "mean_ms", "p50_ms",
           "p95_ms", "p99_ms", "cold_start_ms", "monthly_usd", "per_1000_usd"]
PRICES = dict(instance_usd_per_hour=0.096, hours_per_month=700.0, request_usd=3e-7,
              gb_second_usd=2.5e-5, memory_gb=1.5, batch_usd_per_hour=0.031)


@pytest.fixture(scope="module")
def compare(load_module):
    return load_module("compare")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The model files, the graders' handler file and the graders' REST server (in a folder
    of pytest's, which the learner's process can read and write under sealed grading)."""
    folder = tmp_path_factory.mktemp("ap3_2-compare")
    model = train_model()
    joblib.dump(model, folder / "model.joblib")
    joblib.dump(slow_model(), folder / "slow.joblib")
    (folder / "rest_grader.py").write_text(REST_APP, encoding="utf-8")
    (folder / "grader_handler.py").write_text(HANDLER.format(log_file=str(folder / "invocations.log")),
                                              encoding="utf-8")
    (folder / "failing_handler.py").write_text(FAILING_HANDLER, encoding="utf-8")
    running = serve_asgi("rest_grader:app", folder, ready_path="/health",
                         env={"MODEL_PATH": str(folder / "model.joblib")})
    try:
        yield {"folder": folder, "model": model, "url": running.endpoint.url, "running": running}
    finally:
        running.stop()


def server_count(world) -> int:
    return httpx.get(f"{world['url']}/stats", timeout=10).json()["predict"]


def invocations(world) -> list[dict]:
    log = world["folder"] / "invocations.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return [json.loads(line) for line in lines]


def get(result, name: str):
    __tracebackhide__ = True
    assert isinstance(result, dict), f"a result should be a dict; got {type(result).__name__}"
    assert name in result, f"a result should hold {name!r}; it holds {sorted(result)}"
    return result[name]


def assert_statistics_consistent(result, *, what: str) -> None:
    """Mean and percentiles equal numpy's on the raw latencies; throughput = count / elapsed."""
    __tracebackhide__ = True
    latencies = np.asarray(get(result, "latencies_ms"), dtype=float)
    assert latencies.size > 0 and np.all(latencies > 0), f"{what}: latencies_ms should be positive; got {latencies}"
    for name, q in [("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)]:
        expected = float(np.percentile(latencies, q))
        assert math.isclose(get(result, name), expected, rel_tol=1e-9, abs_tol=1e-12), (
            f"{what}: {name} should be numpy.percentile(latencies_ms, {q}) = {expected}; got {get(result, name)}")
    assert math.isclose(get(result, "mean_ms"), float(latencies.mean()), rel_tol=1e-9), (
        f"{what}: mean_ms should be the mean of latencies_ms = {latencies.mean()}; got {get(result, 'mean_ms')}")
    assert get(result, "p50_ms") <= get(result, "p95_ms") <= get(result, "p99_ms"), f"{what}: p50 <= p95 <= p99"
    expected = get(result, "count") / get(result, "elapsed_s")
    assert math.isclose(get(result, "throughput_per_s"), expected, rel_tol=1e-9), (
        f"{what}: throughput_per_s should be count / elapsed_s = {expected}; got {get(result, 'throughput_per_s')}")


@pytest.mark.points(3)
@pytest.mark.covers("summary-fields", "percentiles", "throughput", "summary-errors")
def test_summary_statistics_match_numpy(compare):
    """summarize() gives numpy's linear percentiles and mean, count / elapsed, and refuses empty input."""
    latencies = [12.0, 3.5, 100.0, 7.25, 7.25, 50.0, 1.0, 900.0, 4.0, 66.0, 2.0]  # skewed, unsorted
    result = compare.summarize("rest", latencies, 2.5, 11, list(range(11)))
    assert get(result, "strategy") == "rest" and get(result, "count") == 11
    assert get(result, "elapsed_s") == 2.5
    assert list(get(result, "latencies_ms")) == latencies, "latencies_ms should be the raw latencies, in order"
    assert list(get(result, "predictions")) == list(range(11))
    assert get(result, "cold_start_ms") is None, "cold_start_ms should be None unless given"
    assert_statistics_consistent(result, what="summarize(...)")
    assert math.isclose(get(result, "throughput_per_s"), 11 / 2.5)
    batch = compare.summarize("batch", [40.0, 10.0], 0.2, 37, [0] * 37, cold_start_ms=None)
    assert math.isclose(get(batch, "throughput_per_s"), 37 / 0.2), "throughput_per_s should use count, not len(latencies)"
    cold = compare.summarize("serverless", [1.0, 2.0], 0.5, 3, [1, 2, 3], cold_start_ms=321.5)
    assert get(cold, "cold_start_ms") == 321.5
    for args in [([], 1.0, 0, []), ([1.0], 0.0, 1, [0]), ([1.0], -1.0, 1, [0])]:
        with pytest.raises(ValueError):
            compare.summarize("rest", *args)


def expected_costs(results, prices, monthly):
    """The cost model of compare.py's docstring, written out."""
    costs = {}
    for r in results:
        if r["strategy"] == "rest":
            needed = monthly / (prices["hours_per_month"] * 3600)
            monthly_usd = max(1, math.ceil(needed / r["throughput_per_s"])) * prices["instance_usd_per_hour"] * prices["hours_per_month"]
        elif r["strategy"] == "serverless":
            monthly_usd = monthly * (prices["request_usd"] + prices["memory_gb"] * prices["gb_second_usd"] * r["mean_ms"] / 1000)
        else:
            monthly_usd = monthly / r["throughput_per_s"] / 3600 * prices["batch_usd_per_hour"]
        costs[r["strategy"]] = {"monthly_usd": monthly_usd, "per_1000_usd": monthly_usd / monthly * 1000}
    return costs


def assert_costs(got, expected, *, what: str) -> None:
    __tracebackhide__ = True
    assert isinstance(got, dict) and set(got) == set(expected), f"{what}: costs should have keys {sorted(expected)}; got {got}"
    for strategy, values in expected.items():
        for key, value in values.items():
            assert math.isclose(got[strategy][key], value, rel_tol=1e-9), (
                f"{what}: {strategy} {key} should be {value}; got {got[strategy][key]}")


@pytest.mark.points(4)
@pytest.mark.covers("cost-keys", "cost-rest", "cost-serverless", "cost-batch", "cost-per-1000", "cost-unknown")
def test_cost_model_arithmetic(compare):
    """estimate_costs follows the documented formulas, with non-default prices and volumes."""
    results = [{"strategy": "rest", "throughput_per_s": 300.0, "mean_ms": 3.0},
               {"strategy": "serverless", "throughput_per_s": 80.0, "mean_ms": 37.5},
               {"strategy": "batch", "throughput_per_s": 12345.0, "mean_ms": 120.0}]
    prices = compare.CostAssumptions(**PRICES)
    big = 2_000_000_000  # needs 793.7 predictions/s: 3 REST instances at 300/s
    assert_costs(compare.estimate_costs(results, prices, monthly_predictions=big),
                 expected_costs(results, PRICES, big), what="2e9 predictions a month")
    small = 50_000  # one instance is the minimum
    assert_costs(compare.estimate_costs(results, prices, monthly_predictions=small),
                 expected_costs(results, PRICES, small), what="50,000 predictions a month")
    exact = int(300 * 2 * 700 * 3600)  # exactly 2 instances' worth: ceil, not +1
    assert_costs(compare.estimate_costs(results[:1], prices, monthly_predictions=exact),
                 expected_costs(results[:1], PRICES, exact), what="exactly two instances' worth")
    assert_costs(compare.estimate_costs(results[:1], prices, monthly_predictions=exact + 1),
                 expected_costs(results[:1], PRICES, exact + 1), what="one prediction more than two instances' worth")
    defaults = compare.CostAssumptions()
    default_prices = dict(instance_usd_per_hour=defaults.instance_usd_per_hour, hours_per_month=defaults.hours_per_month,
                          request_usd=defaults.request_usd, gb_second_usd=defaults.gb_second_usd,
                          memory_gb=defaults.memory_gb, batch_usd_per_hour=defaults.batch_usd_per_hour)
    assert_costs(compare.estimate_costs(results), expected_costs(results, default_prices, 1_000_000),
                 what="the default assumptions and 1,000,000 predictions")
    for unknown in ("edge", "spot", "REST"):
        with pytest.raises(ValueError):
            compare.estimate_costs([{"strategy": unknown, "throughput_per_s": 1.0, "mean_ms": 1.0}])


@pytest.mark.points(4)
@pytest.mark.covers("rest-count", "rest-latency", "rest-predictions", "percentiles", "throughput")
def test_rest_run_matches_what_the_server_saw(compare, world):
    """measure_rest sends exactly one request per row, records real latencies and the model's predictions."""
    data = rows(15, seed=11)
    before = server_count(world)
    started = time.perf_counter()
    result = compare.measure_rest(world["url"], data)
    wall = time.perf_counter() - started
    sent = server_count(world) - before
    assert sent == 15, f"the REST server should get exactly 15 POST /predict (one per row); it got {sent}"
    assert get(result, "strategy") == "rest" and get(result, "count") == 15, f"count should be 15; got {get(result, 'count')}"
    assert len(get(result, "latencies_ms")) == 15, "latencies_ms should hold one latency per request"
    assert list(get(result, "predictions")) == world["model"].predict(data).tolist(), (
        "predictions should be the server's answers, in the order of the rows")
    elapsed = get(result, "elapsed_s")
    assert elapsed <= wall, f"elapsed_s ({elapsed}) cannot exceed the grader's own wall time of the call ({wall})"
    total = sum(get(result, "latencies_ms")) / 1000
    assert elapsed >= total * (1 - 1e-6), (
        f"elapsed_s should be the wall time of the whole (sequential) loop, at least the sum of latencies {total}; got {elapsed}")
    # A loopback HTTP round trip through a Python client takes well over 0.05 ms: a smaller
    # value is a latency in seconds, not milliseconds.
    assert min(get(result, "latencies_ms")) >= 0.05, (
        f"each latency should be the time of one request and its answer, in ms; got {get(result, 'latencies_ms')}")
    assert_statistics_consistent(result, what="measure_rest")


@pytest.mark.points(1)
@pytest.mark.covers("rest-error", "rest-count")
def test_rest_error_status_raises(compare, world):
    """A REST answer other than 200 raises RuntimeError at once, without a retry."""
    before = httpx.get(f"{world['url']}/stats", timeout=10).json()["broken"]
    with pytest.raises(RuntimeError, match="503"):
        compare.measure_rest(f"{world['url']}/broken", rows(2, seed=12))
    sent = httpx.get(f"{world['url']}/stats", timeout=10).json()["broken"] - before
    assert sent == 1, (
        f"the first answer other than 200 should raise at once: the failing server should get 1 request "
        f"(no retry, not the second row); it got {sent}")


@pytest.mark.points(5)
@pytest.mark.covers("fresh-module", "model-env", "event-format", "serverless-count", "cold-start", "warm-latencies")
def test_serverless_run_separates_cold_from_warm(compare, world):
    """measure_serverless imports the handler afresh, invokes it once per row, and reports the cold start apart."""
    data = rows(6, seed=13)
    handler_path = world["folder"] / "grader_handler.py"
    model_path = world["folder"] / "slow.joblib"
    invocations(world)
    runs = []
    with mock.patch.dict(os.environ, {"MODEL_PATH": "/before/the/run"}):
        for _ in range(2):
            started = time.perf_counter()
            result = compare.measure_serverless(handler_path, data, model_path)
            runs.append((result, time.perf_counter() - started, invocations(world)))
            left = learner_getenv("MODEL_PATH")
            assert left == "/before/the/run", f"MODEL_PATH should be restored after the run; it is {left!r}"
    for number, (result, wall, log) in enumerate(runs, start=1):
        what = f"measure_serverless (call {number})"
        assert len(log) == 6, f"{what}: the handler should be invoked exactly 6 times (one per row); it was {len(log)}"
        assert [entry["cold"] for entry in log] == [True] + [False] * 5, (
            f"{what}: the handler should be imported afresh, so only its first invocation is cold; got {[e['cold'] for e in log]}")
        assert len({entry["module"] for entry in log}) == 1
        bad = [entry["problems"] for entry in log if entry["problems"]]
        assert not bad, f"{what}: events should be v2.0 POST /predict events; wrong fields: {bad}"
        assert all(entry["model_path"] == str(model_path) for entry in log), (
            f"{what}: MODEL_PATH should be the model_path during the run; the handler saw {log[0]['model_path']!r}")
        assert all(entry["has_context"] for entry in log), f"{what}: the handler should get a context object"
        assert get(result, "strategy") == "serverless" and get(result, "count") == 6
        cold = get(result, "cold_start_ms")
        assert cold is not None and cold >= COLD_DELAY_S * 1000, (
            f"{what}: cold_start_ms should be the first invocation, which loads a model taking {COLD_DELAY_S} s; got {cold}")
        assert cold >= log[0]["inside_ms"], (
            f"{what}: cold_start_ms should be the whole first invocation, which spent {log[0]['inside_ms']:.3f} ms "
            f"inside the handler alone; got {cold} (the first latency, not its difference from the warm ones)")
        inside = sorted(entry["inside_ms"] for entry in log[1:])
        latencies = sorted(get(result, "latencies_ms"))
        assert len(latencies) == len(inside) and all(
                got >= spent for got, spent in zip(latencies, inside, strict=True)), (
            f"{what}: each warm latency should cover its whole invocation; the handler spent {inside} ms inside, "
            f"latencies_ms are {sorted(get(result, 'latencies_ms'))}")
        warm = get(result, "latencies_ms")
        assert len(warm) == 5, f"{what}: latencies_ms should hold the 5 warm invocations only; it holds {len(warm)}"
        assert max(warm) < COLD_DELAY_S * 800, f"{what}: warm latencies should exclude the cold start; got {warm}"
        assert list(get(result, "predictions")) == world["model"].predict(data).tolist(), (
            f"{what}: predictions should be the handler's answers, in the order of the rows")
        elapsed = get(result, "elapsed_s")
        assert (cold + sum(warm)) / 1000 * (1 - 1e-6) <= elapsed <= wall, (
            f"{what}: elapsed_s should cover every invocation, cold one included ({(cold + sum(warm)) / 1000} s); got {elapsed}")
        assert_statistics_consistent(result, what=what)
    with mock.patch.dict(os.environ):
        os.environ.pop("MODEL_PATH", None)
        compare.measure_serverless(handler_path, data[:2], world["folder"] / "model.joblib")
        assert learner_getenv("MODEL_PATH") is None, "MODEL_PATH was unset before the run and should be unset after it"
    invocations(world)


@pytest.mark.points(1)
@pytest.mark.covers("serverless-error", "model-env", "serverless-min-rows")
def test_serverless_error_status_raises(compare, world):
    """A handler answering 500 makes measure_serverless raise RuntimeError, and MODEL_PATH is restored."""
    with mock.patch.dict(os.environ, {"MODEL_PATH": "/kept"}):
        with pytest.raises(RuntimeError, match="500"):
            compare.measure_serverless(world["folder"] / "failing_handler.py", rows(3, seed=14),
                                       world["folder"] / "model.joblib")
        assert learner_getenv("MODEL_PATH") == "/kept", "MODEL_PATH should be restored even when the run fails"
    for few in (rows(1, seed=17), []):
        with pytest.raises(ValueError):
            compare.measure_serverless(world["folder"] / "grader_handler.py", few, world["folder"] / "model.joblib")
    invocations(world)


@pytest.mark.points(4)
@pytest.mark.covers("batch-chunks", "batch-output", "batch-count", "batch-elapsed")
def test_batch_job_predicts_every_row_in_batches(compare, world, tmp_path):
    """measure_batch writes one prediction per row, times one latency per batch, and counts the model load."""
    data = rows(11, seed=15)
    source = tmp_path / "in.csv"
    pd.DataFrame(data, columns=[f"f{i}" for i in range(6)]).to_csv(source, index=False)
    started = time.perf_counter()
    result = compare.measure_batch(world["folder"] / "slow.joblib", source, tmp_path / "out.csv", batch_size=4)
    wall = time.perf_counter() - started
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["prediction"], f"the output should have one column 'prediction'; got {list(out.columns)}"
    expected = world["model"].predict(data).tolist()
    assert out["prediction"].tolist() == expected, "the output should hold the model's prediction of each row, in order"
    assert get(result, "count") == 11 and get(result, "strategy") == "batch"
    assert list(get(result, "predictions")) == expected
    assert len(get(result, "latencies_ms")) == 3, (
        f"11 rows in batches of 4 make 3 batches, so 3 latencies; got {len(get(result, 'latencies_ms'))}")
    elapsed = get(result, "elapsed_s")
    assert COLD_DELAY_S <= elapsed <= wall, (
        f"elapsed_s should cover the whole job, loading the model ({COLD_DELAY_S} s) included; got {elapsed}")
    assert sum(get(result, "latencies_ms")) / 1000 <= elapsed - COLD_DELAY_S * 0.9, (
        "a batch's latency is its read, predict and write: the model load is not part of it")
    assert min(get(result, "latencies_ms")) >= 0.05, (
        f"each latency should be one batch's read, predict and write, in ms; got {get(result, 'latencies_ms')}")
    assert_statistics_consistent(result, what="measure_batch")
    # Again into the same output file, with one batch: the file is replaced, not appended to.
    one = compare.measure_batch(world["folder"] / "model.joblib", source, tmp_path / "out.csv", batch_size=20)
    assert len(get(one, "latencies_ms")) == 1 and get(one, "count") == 11
    again = pd.read_csv(tmp_path / "out.csv")
    assert again["prediction"].tolist() == expected, (
        f"measure_batch run again into an existing output_csv should replace it: 11 rows expected, "
        f"the file holds {len(again)} (appended to the first run's?)")


@pytest.fixture(scope="module")
def comparison(compare, world):
    """One full run_comparison against the graders' servers, with non-default batch size and prices."""
    out = world["folder"] / "report" / "nested"
    data = rows(10, seed=16)
    before = server_count(world)
    invocations(world)
    started = time.perf_counter()
    table = compare.run_comparison(world["folder"] / "model.joblib", data, rest_url=world["url"],
                                   handler_path=world["folder"] / "grader_handler.py", out_dir=out,
                                   batch_size=3, assumptions=compare.CostAssumptions(**PRICES),
                                   monthly_predictions=5_000_000)
    wall = time.perf_counter() - started
    return {"table": table, "out": out, "data": data, "wall": wall,
            "rest_requests": server_count(world) - before, "invocations": invocations(world)}


@pytest.mark.points(4)
@pytest.mark.covers("run-all", "table-rows", "throughput", "percentiles")
def test_comparison_numbers_are_consistent(comparison, compare, world):
    """run_comparison measures all three strategies on the same rows, and its numbers add up."""
    table, n = comparison["table"], len(comparison["data"])
    assert [row.get("strategy") for row in table] == ["rest", "serverless", "batch"], (
        f"the table should have rows rest, serverless, batch in that order; got {[r.get('strategy') for r in table]}")
    # comparison_table keeps the order of the results it is given, whatever it is.
    costs = {row["strategy"]: {"monthly_usd": row["monthly_usd"], "per_1000_usd": row["per_1000_usd"]} for row in table}
    results = [dict(row) for row in reversed(table)]
    reordered = compare.comparison_table(results, costs)
    assert [row.get("strategy") for row in reordered] == ["batch", "serverless", "rest"], (
        "comparison_table(results, costs) should give one row per result in the results' order (here batch, "
        f"serverless, rest); got {[row.get('strategy') for row in reordered]}")
    for row in table:
        assert list(row) == COLUMNS, f"each row should have the columns of TABLE_COLUMNS; got {list(row)}"
        assert row["count"] == n, f"{row['strategy']}: count should be {n}; got {row['count']}"
        assert math.isclose(row["throughput_per_s"], n / row["elapsed_s"], rel_tol=1e-9), (
            f"{row['strategy']}: throughput_per_s should be count / elapsed_s")
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"], f"{row['strategy']}: p50 <= p95 <= p99"
    assert sum(row["elapsed_s"] for row in table) <= comparison["wall"]
    assert comparison["rest_requests"] == n, f"the REST server should get {n} requests; it got {comparison['rest_requests']}"
    log = comparison["invocations"]
    assert len(log) == n and log[0]["cold"] and not any(e["cold"] for e in log[1:]), (
        f"the handler should be invoked {n} times, cold once; got {len(log)} invocations")
    assert table[1]["cold_start_ms"] is not None and table[0]["cold_start_ms"] is None and table[2]["cold_start_ms"] is None
    costs = expected_costs(table, PRICES, 5_000_000)
    for row in table:
        for key in ("monthly_usd", "per_1000_usd"):
            assert math.isclose(row[key], costs[row["strategy"]][key], rel_tol=1e-9), (
                f"{row['strategy']}: {key} should follow the cost model with the given assumptions: "
                f"{costs[row['strategy']][key]}; got {row[key]}")
    batch_in = pd.read_csv(comparison["out"] / "batch_input.csv")
    assert batch_in.shape == (n, 6), f"batch_input.csv should hold the {n} rows; got shape {batch_in.shape}"
    assert list(batch_in.columns) == [f"x{i}" for i in range(6)], (
        f"batch_input.csv should have the header x0, x1, ..., x5; got {list(batch_in.columns)}")
    predicted = pd.read_csv(comparison["out"] / "batch_predictions.csv")["prediction"].tolist()
    assert predicted == world["model"].predict(comparison["data"]).tolist()


@pytest.mark.points(4)
@pytest.mark.covers("report-json", "report-csv", "report-markdown", "report-plot", "run-all")
def test_report_files_parse_and_agree(comparison, compare, tmp_path):
    """comparison.json, .csv, .md and .png exist, parse, and hold the table run_comparison returned."""
    made = [compare.summarize(name, [2.0, 1.0, 4.0], 0.5, 3, [10, 20, 30],
                              cold_start_ms=99.0 if name == "serverless" else None)
            for name in ("rest", "serverless", "batch")]
    deep = tmp_path / "not" / "yet" / "there"
    written = compare.write_report(made, compare.estimate_costs(made), deep)
    for key, name in [("json", "comparison.json"), ("csv", "comparison.csv"), ("markdown", "comparison.md"),
                      ("plot", "comparison.png")]:
        assert Path(written[key]) == deep / name and (deep / name).is_file(), (
            f"write_report should create the missing folder and write {name}, and return its path under {key!r}; "
            f"got {written}")
    out, table = comparison["out"], comparison["table"]
    data = json.loads((out / "comparison.json").read_text())
    assert [r["strategy"] for r in data["rows"]] == ["rest", "serverless", "batch"]
    for got, want in zip(data["rows"], table, strict=True):
        for column in COLUMNS:
            assert got[column] == want[column] or math.isclose(got[column], want[column], rel_tol=1e-9), (
                f"comparison.json {want['strategy']} {column} should be {want[column]}; got {got[column]}")
    for row in table:
        raw = np.asarray(data["latencies_ms"][row["strategy"]], dtype=float)
        assert math.isclose(row["p99_ms"], float(np.percentile(raw, 99)), rel_tol=1e-9), (
            f"{row['strategy']}: p99_ms should be the 99th percentile of the raw latencies in comparison.json")
        assert math.isclose(row["mean_ms"], float(raw.mean()), rel_tol=1e-9)
    csv_table = pd.read_csv(out / "comparison.csv")
    assert list(csv_table.columns) == COLUMNS, f"comparison.csv should have the header {COLUMNS}; got {list(csv_table.columns)}"
    assert csv_table["strategy"].tolist() == ["rest", "serverless", "batch"]
    for column in ["count", "elapsed_s", "throughput_per_s", "p50_ms", "p99_ms", "per_1000_usd"]:
        np.testing.assert_allclose(csv_table[column].to_numpy(float), [r[column] for r in table], rtol=1e-6,
                                   err_msg=f"comparison.csv column {column} should equal the table's")
    lines = [line.strip() for line in (out / "comparison.md").read_text().strip().splitlines() if line.strip()]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == COLUMNS, f"comparison.md should start with a header row of {COLUMNS}; got {lines[0]}"
    assert all(set(c) <= set("-: ") and c for c in cells[1]), f"the second line of comparison.md should be |---|; got {lines[1]}"
    assert [c[0] for c in cells[2:]] == ["rest", "serverless", "batch"] and all(len(c) == len(COLUMNS) for c in cells[2:]), (
        f"comparison.md should have one row per strategy with {len(COLUMNS)} cells; got {lines[2:]}")
    from PIL import Image

    png = out / "comparison.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "comparison.png should be a PNG file"
    with Image.open(png) as image:
        assert image.size[0] >= 200 and image.size[1] >= 150, f"the plot should be a real figure; it is {image.size}"
        assert len(image.getcolors(maxcolors=1_000_000) or [0, 0]) > 2, "the plot should not be a blank image"
