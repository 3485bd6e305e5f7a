"""The Flow control page and the failure dashboard's throttling: each shared rate limit with
what waits under it and what it throttled, counted from the throttled events."""

from __future__ import annotations

import pytest
from django.urls import reverse

from orchestrator.engine import breakers
from orchestrator.engine.runs import start_run
from orchestrator.models import Event, EventKind

from ..engine.test_transitions import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def throttled_runs(settings, demos, sink_path):
    """Four partner lookups at two calls a second: three are put back at least once."""
    settings.RATCHET = {**settings.RATCHET, "RATE_LIMITS": {"demo.partner_api": {"rate": 2, "burst": 1}}}
    runs = [start_run("partner_lookup", {"order_id": f"P-{i}"})[0] for i in range(4)]
    return [drain(run, every_run=True) for run in runs]


def test_flow_needs_login(client):
    response = client.get(reverse("monitoring:flow"))
    assert response.status_code == 302 and "/login/" in response.url


def test_without_limits_the_page_says_how_to_set_one(viewer, settings):
    settings.RATCHET = {**settings.RATCHET, "RATE_LIMITS": {}}
    assert "No rate limit is set" in viewer.get(reverse("monitoring:flow")).content.decode()


def test_the_page_shows_each_limit_and_what_it_throttled(viewer, throttled_runs):
    assert all(run.status == "succeeded" for run in throttled_runs)
    events = Event.objects.filter(kind=EventKind.THROTTLED)
    steps, runs = events.count(), events.values("run").distinct().count()
    assert steps >= 3
    text = viewer.get(reverse("monitoring:flow")).content.decode()
    assert "<code>demo.partner_api</code></td><td>2 a second, burst 1</td>" in text
    assert f"{steps} steps in {runs} runs" in text
    fragment = viewer.get(reverse("monitoring:flow"), {"fragment": "1"}).content.decode()
    assert "<h1>" not in fragment and "demo.partner_api" in fragment


def test_the_failure_dashboard_shows_throttling_apart_from_failures(viewer, throttled_runs):
    text = viewer.get(reverse("monitoring:failures")).content.decode()
    section = text[text.index('id="throttling"'):]
    steps = Event.objects.filter(kind=EventKind.THROTTLED).count()
    assert f"<td><code>demo.partner_api</code></td><td>{steps}</td><td>" in section
    assert "0 failed runs" in text


@pytest.fixture
def open_breaker(settings, redis_conn):
    settings.RATCHET = {**settings.RATCHET, "CIRCUIT_BREAKERS": {"demo.partner_api": {"failures": 1,
                                                                                      "open_seconds": 60}}}
    guarded = breakers.configured()["demo.partner_api"]
    breakers.record("demo.partner_api", guarded, succeeded=False)
    return guarded


def test_the_page_shows_an_open_breaker_and_an_operator_resets_it(operator, open_breaker):
    text = operator.get(reverse("monitoring:flow")).content.decode()
    assert 'class="breaker-open"' in text and "open: calls held back, a probe in" in text
    response = operator.post(reverse("monitoring:reset_breaker"), {"handler": "demo.partner_api"}, follow=True)
    assert "The circuit breaker of demo.partner_api is closed" in response.content.decode()
    assert breakers.states()[0].state == "closed"


def test_a_viewer_may_not_reset_a_breaker(viewer, open_breaker):
    assert viewer.post(reverse("monitoring:reset_breaker"), {"handler": "demo.partner_api"}).status_code == 403
    assert breakers.states()[0].state == "open"
    assert "Reset</button>" not in viewer.get(reverse("monitoring:flow")).content.decode()


def test_resetting_an_unknown_breaker_is_refused(operator, open_breaker):
    response = operator.post(reverse("monitoring:reset_breaker"), {"handler": "<nope>"}, follow=True)
    assert "No circuit breaker guards &#x27;&lt;nope&gt;&#x27;." in response.content.decode()


def test_the_failure_dashboard_shows_a_breaker_that_is_not_closed(viewer, open_breaker):
    text = viewer.get(reverse("monitoring:failures")).content.decode()
    assert 'id="tripped-breakers"' in text and "<code>demo.partner_api</code>: <strong>open, a probe in" in text
    breakers.reset("demo.partner_api")
    assert 'id="tripped-breakers"' not in viewer.get(reverse("monitoring:failures")).content.decode()
