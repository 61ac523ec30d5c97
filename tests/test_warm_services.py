"""Services handed from a parent process to graders (``WORKBOOK_WARM_SERVICES``)."""

from __future__ import annotations

import pytest

from workbook import services
from workbook.services.base import MlflowEndpoint, Running, ServiceUnavailable


def test_graders_attach_to_handed_over_services(monkeypatch):
    """The environment a parent builds gives a child the same endpoint; others start as usual."""
    endpoint = MlflowEndpoint(service="mlflow", backend="local", host="127.0.0.1", port=5123)
    env = services.warm_environment([Running(endpoint, stop_fn=lambda: None)])
    monkeypatch.setenv(services.WARM_ENV, env[services.WARM_ENV])
    assert services.attached("mlflow") == endpoint
    assert services.attached("mlflow").tracking_uri == "http://127.0.0.1:5123"
    assert services.attached("redis") is None
    assert services.attached("prometheus") is None  # its config changes per grader: never shared


def test_a_corrupt_handover_is_one_sentence(monkeypatch):
    monkeypatch.setenv(services.WARM_ENV, "{not json")
    with pytest.raises(ServiceUnavailable, match="is not valid JSON"):
        services.attached("mlflow")


def test_attached_service_fixture_is_used_without_starting_one(pytester, monkeypatch):
    """The `redis` fixture returns the handed-over endpoint and starts nothing."""
    monkeypatch.setenv(services.WARM_ENV, '{"redis": {"service": "redis", "backend": "local", '
                                          '"host": "127.0.0.1", "port": 6399}}')
    pytester.makepyfile("""
        def test_uses_it(redis):
            assert redis.port == 6399 and redis.url == "redis://127.0.0.1:6399/0"
    """)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
