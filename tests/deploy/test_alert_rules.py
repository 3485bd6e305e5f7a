"""deploy/prometheus-alerts.yml: every rule is well formed and every metric its expression names
is one that /metrics really exposes (a renamed metric would silently never fire)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.engine import breakers

pytestmark = pytest.mark.django_db

RULES = Path(settings.BASE_DIR) / "deploy" / "prometheus-alerts.yml"
TOKEN = "alert-rules-scrape-token"
METRIC_NAME = re.compile(r"\bratchet_[a-z0-9_]+\b")


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def exposed_names(client, settings) -> set[str]:
    """The series names PromQL can query in a real scrape: every sample's name, and a gauge's
    name even when it has no sample now (no stuck run). A counter's family name is not one:
    its series is ``<name>_total``."""
    settings.RATCHET_METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    names = set()
    for family in text_string_to_metric_families(response.content.decode()):
        if family.type == "gauge":
            names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_every_alert_rule_is_complete():
    found = rules()
    assert {rule["alert"] for rule in found} >= {
        "RatchetRunsStuck", "RatchetCircuitBreakerOpen", "RatchetEffectsAwaitingDecision", "RatchetDuplicateEffects"}
    for rule in found:
        assert rule["expr"].strip() and rule["labels"]["severity"] and rule["annotations"]["summary"], rule["alert"]
        assert METRIC_NAME.search(rule["expr"]), f"{rule['alert']} names no Ratchet metric"


def test_every_metric_an_alert_names_is_exposed_by_the_metrics_endpoint(client, settings, redis_conn):
    exposed = exposed_names(client, settings)
    for rule in rules():
        for name in METRIC_NAME.findall(rule["expr"]):
            assert name in exposed, f"{rule['alert']}: /metrics exposes no {name}"


def test_the_breaker_metric_says_which_breaker_is_open(client, settings, redis_conn):
    """What RatchetCircuitBreakerOpen reads: 0 while closed, 1 once failures open the breaker."""
    settings.RATCHET_METRICS_TOKEN = TOKEN
    name, breaker = "demo.partner_api", breakers.configured()["demo.partner_api"]

    def value() -> float:
        text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
        family = next(f for f in text_string_to_metric_families(text) if f.name == "ratchet_circuit_breaker_open")
        return next(s.value for s in family.samples if s.labels == {"handler": name})

    assert value() == 0
    for _ in range(breaker.failures):
        breakers.record(name, breaker, succeeded=False)
    assert value() == 1
