"""Graders for CE4.1, part 1: ``status_class`` and ``ServingMetrics`` called directly, no server.

Each check makes fresh ``ServingMetrics`` instances (each on a registry of its own), records
a constructed set of predictions, and reads ``exposition()`` back with prometheus_client's
text parser. Expected values are counted here from the same constructed inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from ce4_1_support import family_type, parse, promtool_check

from workbook.checks import assert_close

# name -> (type, labels of its series)
METRICS = {
    "http_requests_total": ("counter", {"endpoint", "status"}),
    "http_request_duration_seconds": ("histogram", {"endpoint"}),
    "http_requests_in_flight": ("gauge", set()),
    "model_prediction_confidence": ("histogram", set()),
    "model_predictions_total": ("counter", {"class"}),
    "model_info": ("gauge", {"name", "version"}),
}


def make(metrics, classes=("cat", "dog"), name="unit-model", version="1.0"):
    return metrics.ServingMetrics(model_name=name, model_version=version, classes=list(classes))


def exposed(instance, where="exposition()"):
    __tracebackhide__ = True
    result = instance.exposition()
    assert isinstance(result, tuple) and len(result) == 2, (
        f"exposition() should return (body, content_type); got {type(result).__name__}")
    body, content_type = result
    assert isinstance(body, bytes), f"exposition()'s body should be bytes; got {type(body).__name__}"
    return parse(body.decode("utf-8"), where), content_type


@pytest.mark.points(2)
@pytest.mark.covers("status-class")
def test_status_class(metrics):
    """Every class boundary: 100/199, 200/299, 300/399, 400/499, 500/599, and codes in between."""
    codes = [100, 199, 200, 201, 204, 299, 301, 302, 399, 400, 401, 404, 418, 422, 429, 499, 500, 502, 503, 599]
    got = {code: metrics.status_class(code) for code in codes}
    wrong = {code: value for code, value in got.items() if value != f"{code // 100}xx"}
    assert not wrong, ("status_class(code) should be the class of the code's hundreds digit "
                       "(404 -> '4xx'); got " + ", ".join(f"{c} -> {v!r}" for c, v in wrong.items()))


@pytest.mark.points(3)
@pytest.mark.covers("requests-total", "latency-histogram", "in-flight", "confidence-histogram",
                    "predictions-by-class", "model-info")
def test_metric_names_and_types(metrics):
    """Each metric exists under its name with its type: counters, histograms, gauges."""
    instance = make(metrics)
    instance.record_prediction("cat", 0.9)
    scrape, _ = exposed(instance)
    for name, (kind, _labels) in METRICS.items():
        found = family_type(scrape, name)
        assert found is not None, (
            f"the exposition should list the metric {name}; it lists {sorted(scrape.types)}")
        assert found == kind, f"{name} should be a {kind}; it is a {found}"


@pytest.mark.points(3)
@pytest.mark.covers("confidence-histogram", "confidence-buckets")
def test_confidence_histogram_counts_every_prediction(metrics):
    """Sum, count and every bucket of the confidence histogram equal the recorded confidences."""
    confidences = [0.34, 0.51, 0.55, 0.62, 0.7, 0.81, 0.88, 0.93, 0.97, 0.99, 1.0, 0.45, 0.66, 0.58]
    instance = make(metrics)
    for i, c in enumerate(confidences):
        instance.record_prediction("cat" if i % 3 else "dog", c)
    scrape, _ = exposed(instance)
    assert_close(scrape.value("model_prediction_confidence_count"), len(confidences),
                 what="model_prediction_confidence_count after 14 predictions")
    assert_close(scrape.value("model_prediction_confidence_sum"), sum(confidences),
                 what="model_prediction_confidence_sum (the recorded confidences added up)")
    buckets = scrape.buckets("model_prediction_confidence")
    finite = sorted(le for le in buckets if le != float("inf"))
    assert len(finite) >= 5 and all(0 < le <= 1 for le in finite), (
        f"the confidence buckets should be at least 5 bounds within (0, 1]; got {finite}")
    for le in finite:
        expected = sum(c <= le for c in confidences)
        assert buckets[le] == expected, (
            f"model_prediction_confidence_bucket{{le=\"{le:g}\"}} should count the {expected} confidences "
            f"at most {le:g}; got {buckets[le]:g}")


@pytest.mark.points(3)
@pytest.mark.covers("predictions-by-class", "classes-at-zero", "numpy-values")
def test_predictions_by_class_label_with_numpy_values(metrics):
    """Class labels (numpy ints and strings) are counted by their text; unpredicted classes sit at 0."""
    instance = make(metrics, classes=np.array([-1, 3, 7]))
    for label in [3, 3, -1, 3]:
        instance.record_prediction(np.int64(label), np.float64(0.75))
    scrape, _ = exposed(instance)
    got = {dict(k).get("class"): v for k, v in scrape.series("model_predictions_total").items()}
    assert got == {"-1": 1.0, "3": 3.0, "7": 0.0}, (
        "model_predictions_total by class should be {'-1': 1, '3': 3, '7': 0} after predicting "
        f"np.int64 labels 3, 3, -1, 3 with classes [-1, 3, 7]; got {got}")
    assert_close(scrape.value("model_prediction_confidence_sum"), 3.0,
                 what="model_prediction_confidence_sum after four np.float64(0.75)")
    words = make(metrics, classes=np.array(["bronze", "gold", "silver"]))
    words.record_prediction(np.str_("gold"), 0.6)
    scrape, _ = exposed(words)
    got = {dict(k).get("class"): v for k, v in scrape.series("model_predictions_total").items()}
    assert got == {"bronze": 0.0, "gold": 1.0, "silver": 0.0}, (
        f"model_predictions_total should count np.str_('gold') as class 'gold', the others at 0; got {got}")


@pytest.mark.points(2)
@pytest.mark.covers("model-info")
def test_model_info_names_the_model(metrics):
    """model_info has one series, labelled with the model's name and version, at 1."""
    scrape, _ = exposed(make(metrics, name="fraud-gbm", version="v12.3"))
    series = scrape.series("model_info")
    assert series == {(("name", "fraud-gbm"), ("version", "v12.3")): 1.0}, (
        "model_info should be one series {name=\"fraud-gbm\", version=\"v12.3\"} at 1; got "
        f"{[(dict(k), v) for k, v in series.items()]}")


@pytest.mark.points(2)
@pytest.mark.covers("registry-default")
def test_instances_do_not_share_metrics(metrics):
    """Two instances without a registry each get their own: no collision, no shared counts."""
    first = make(metrics, classes=["a", "b"])
    second = make(metrics, classes=["a", "b"])  # a shared global registry raises "Duplicated timeseries"
    first.record_prediction("a", 0.8)
    first.record_prediction("a", 0.9)
    one, _ = exposed(first)
    two, _ = exposed(second)
    assert one.value("model_predictions_total", **{"class": "a"}) == 2, (
        "the first instance should count its 2 predictions of 'a'; got "
        f"{one.value('model_predictions_total', **{'class': 'a'}):g}")
    assert two.value("model_predictions_total", **{"class": "a"}) == 0 and \
        two.value("model_prediction_confidence_count") == 0, (
        "a second instance should not see the first one's predictions: each needs a registry of its own")


@pytest.mark.points(2)
@pytest.mark.covers("exposition-valid")
def test_exposition_passes_promtool(metrics):
    """exposition() is text/plain Prometheus format, each series once, clean under promtool."""
    instance = make(metrics)
    for label, c in [("cat", 0.7), ("dog", 0.95), ("cat", 0.51)]:
        instance.record_prediction(label, c)
    scrape, content_type = exposed(instance)
    assert isinstance(content_type, str) and content_type.startswith("text/plain"), (
        f"the content type should be Prometheus's text/plain (CONTENT_TYPE_LATEST); got {content_type!r}")
    assert not scrape.duplicates, f"each series should be listed once; repeated: {scrape.duplicates[:5]}"
    problems = promtool_check(scrape.text)
    assert not problems, f"`promtool check metrics` should find nothing; it says:\n{problems}"
