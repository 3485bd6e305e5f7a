"""``/metrics``: who may read it, what it says (checked against hand-counted rows), that it reads
the database at every scrape in a fixed number of queries, and that Redis being down costs only
the RQ figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.engine import workers
from orchestrator.engine.workflows import publish
from orchestrator.models import AttemptStatus, Effect, EffectStatus, FailureMode, Run, RunStatus, StepAttempt

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-scrape-token"
SCRAPE_QUERIES = 7


def definition(name: str) -> dict:
    return {"name": name, "start_at": "a", "states": {"a": {"type": "succeed"}}}


def make_run(version, status, age: timedelta, duration: timedelta | None = None, **fields) -> Run:
    now = timezone.now()
    created = now - age
    finished = created + duration if duration is not None else None
    run = Run.objects.create(workflow=version.workflow, version=version, status=status, finished_at=finished, **fields)
    Run.objects.filter(pk=run.pk).update(created_at=created)  # auto_now_add
    run.created_at = created
    return run


def attempt(run, status, *, queue="default", ago: timedelta = timedelta(0), **fields) -> StepAttempt:
    when = timezone.now() - ago
    return StepAttempt.objects.create(run=run, state_name=fields.pop("state_name", "a"), sequence=1, status=status,
                                      queue=queue, scheduled_at=fields.pop("scheduled_at", when), **fields)


def effect(run, key, status, **fields) -> Effect:
    return Effect.objects.create(run=run, key=key, state_name="a", status=status, intent_at=run.created_at, **fields)


@pytest.fixture
def versions():
    return publish(definition("alpha"))[0], publish(definition("beta"))[0]


@pytest.fixture
def data(versions):
    """Runs, attempts, effects, queues and workers with hand-counted figures (see the asserts)."""
    alpha, beta = versions
    hour = timedelta(hours=1)
    # Succeeded runs: alpha 0.3 s, 4 s, 90 s; beta 2 h.
    for seconds in (0.3, 4, 90):
        make_run(alpha, RunStatus.SUCCEEDED, hour, timedelta(seconds=seconds))
    make_run(beta, RunStatus.SUCCEEDED, 3 * hour, timedelta(hours=2))
    make_run(alpha, RunStatus.FAILED, hour, timedelta(seconds=5), failure_mode=FailureMode.TIMEOUT)
    make_run(alpha, RunStatus.FAILED, hour, timedelta(seconds=5), failure_mode=FailureMode.TIMEOUT)
    make_run(beta, RunStatus.FAILED, hour, timedelta(seconds=5), failure_mode=FailureMode.HANDLER_ERROR)
    # Stuck: running for an hour, its last attempt finished 50 minutes ago, nothing since.
    stuck = make_run(alpha, RunStatus.RUNNING, hour)
    attempt(stuck, AttemptStatus.SUCCEEDED, ago=timedelta(minutes=55), claimed_at=timezone.now() - timedelta(
        minutes=55), finished_at=timezone.now() - timedelta(minutes=50))
    # Not stuck: young; waiting for a person; on a timer due tomorrow; with a recent claim.
    young = make_run(alpha, RunStatus.RUNNING, timedelta(minutes=1))
    attempt(young, AttemptStatus.SCHEDULED, queue="default")  # due now, on default
    make_run(beta, RunStatus.WAITING, hour)
    timer = make_run(beta, RunStatus.RUNNING, hour)
    attempt(timer, AttemptStatus.SCHEDULED, queue="slow", not_before=timezone.now() + timedelta(days=1))
    busy = make_run(beta, RunStatus.RUNNING, hour)
    attempt(busy, AttemptStatus.RUNNING, queue="slow", claimed_at=timezone.now() - timedelta(minutes=2),
            worker="host.1")
    attempt(busy, AttemptStatus.LOST, queue="slow", worker="host.9", finished_at=timezone.now())
    # Effects: 2 confirmed (1 duplicate, 3 dedup hits), 1 uncertain, 1 compensation failed.
    effect(busy, "pay", EffectStatus.CONFIRMED, duplicates=1, dedup_hits=2)
    effect(busy, "mail", EffectStatus.CONFIRMED, dedup_hits=1)
    effect(busy, "ship", EffectStatus.UNCERTAIN)
    effect(busy, "refund", EffectStatus.COMPENSATION_FAILED)
    workers.beat("host.1", ["default", "slow"])
    workers.beat("host.2", ["default"])
    return versions


def scrape(client, **headers):
    return client.get(reverse("metrics"), **headers)


def families(response) -> dict:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def samples(family, name: str | None = None) -> dict:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if name is None or s.name == name}


@pytest.fixture
def token(settings):
    settings.RATCHET_METRICS_TOKEN = TOKEN
    settings.RATCHET_METRICS_ALLOW = []
    return {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


# --- who may read it -----------------------------------------------------------------------------------


def test_without_configuration_only_signed_in_staff_may_read(client, django_user_model, settings):
    settings.RATCHET_METRICS_TOKEN, settings.RATCHET_METRICS_ALLOW = "", []
    anonymous = scrape(client)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    client.force_login(django_user_model.objects.create_user("vera", password="pw"))
    assert scrape(client).status_code == 403
    client.force_login(django_user_model.objects.create_user("sam", password="pw", is_staff=True))
    assert scrape(client).status_code == 200
    assert scrape(client, HTTP_AUTHORIZATION="Bearer anything").status_code == 403  # no token is configured


def test_the_token_opens_it_and_a_wrong_one_is_refused(client, token):
    assert scrape(client, **token).status_code == 200
    assert scrape(client, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert scrape(client, HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 403
    assert scrape(client).status_code == 401


def test_listed_addresses_may_read_without_a_token(client, settings):
    settings.RATCHET_METRICS_TOKEN = TOKEN
    settings.RATCHET_METRICS_ALLOW = ["10.0.0.7", "192.168.1.0/24"]
    assert scrape(client, REMOTE_ADDR="10.0.0.7").status_code == 200
    assert scrape(client, REMOTE_ADDR="192.168.1.40").status_code == 200
    assert scrape(client, REMOTE_ADDR="10.0.0.8").status_code == 401
    # The forwarded-for header is the client's word, not its address.
    assert scrape(client, REMOTE_ADDR="10.0.0.8", HTTP_X_FORWARDED_FOR="10.0.0.7").status_code == 401
    assert scrape(client, REMOTE_ADDR="10.0.0.7", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


def test_only_get_is_served(client, token):
    assert client.post(reverse("metrics"), **token).status_code == 405


# --- what it says -------------------------------------------------------------------------------------


def test_runs_attempts_and_effects_are_counted_from_the_database(client, data, token):
    found = families(scrape(client, **token))
    runs = samples(found["ratchet_runs"])
    assert runs[(("failure_mode", ""), ("status", "succeeded"), ("workflow", "alpha"))] == 3
    assert runs[(("failure_mode", "timeout"), ("status", "failed"), ("workflow", "alpha"))] == 2
    assert runs[(("failure_mode", "handler_error"), ("status", "failed"), ("workflow", "beta"))] == 1
    assert runs[(("failure_mode", ""), ("status", "running"), ("workflow", "beta"))] == 2
    assert sum(runs.values()) == Run.objects.count()

    attempts = samples(found["ratchet_attempts"])
    assert attempts[(("status", "scheduled"),)] == 2
    assert attempts[(("status", "running"),)] == 1 and attempts[(("status", "lost"),)] == 1
    assert attempts[(("status", "timed_out"),)] == 0  # every status is present, zero or not

    effects = samples(found["ratchet_effects"])
    assert effects[(("status", "confirmed"),)] == 2 and effects[(("status", "intent"),)] == 0
    assert samples(found["ratchet_effect_duplicates"], "ratchet_effect_duplicates_total") == {(): 1}
    assert samples(found["ratchet_effect_dedup_hits"], "ratchet_effect_dedup_hits_total") == {(): 3}
    assert samples(found["ratchet_effects_awaiting_decision"]) == {
        (("status", "uncertain"),): 1, (("status", "compensation_failed"),): 1}


def test_stuck_runs_are_the_engine_driven_ones_that_stopped_moving(client, data, token, settings):
    found = families(scrape(client, **token))
    assert samples(found["ratchet_runs_stuck"]) == {(("workflow", "alpha"),): 1}
    assert samples(found["ratchet_runs_stuck_threshold_seconds"]) == {(): 15 * 60}
    settings.RATCHET_METRICS_STUCK_MINUTES = 120  # nothing has been still for two hours
    found = families(scrape(client, **token))
    assert samples(found["ratchet_runs_stuck"]) == {}


def test_queues_workers_and_rq_lengths(client, data, token, redis_conn):
    redis_conn.rpush("rq:queue:default", "job-1", "job-2")
    found = families(scrape(client, **token))
    assert samples(found["ratchet_queue_scheduled_attempts"]) == {
        (("due", "true"), ("queue", "default")): 1, (("due", "false"), ("queue", "default")): 0,
        (("due", "true"), ("queue", "slow")): 0, (("due", "false"), ("queue", "slow")): 1,
    }
    assert samples(found["ratchet_queue_running_attempts"]) == {(("queue", "default"),): 0, (("queue", "slow"),): 1}
    assert samples(found["ratchet_queue_workers"]) == {(("queue", "default"),): 2, (("queue", "slow"),): 1}
    assert samples(found["ratchet_queue_oldest_due_age_seconds"])[(("queue", "default"),)] >= 0
    assert samples(found["ratchet_workers_alive"]) == {(): 2}
    assert samples(found["ratchet_redis_up"]) == {(): 1}
    assert samples(found["ratchet_rq_queue_length"]) == {(("queue", "default"),): 2, (("queue", "slow"),): 0}


def test_redis_down_costs_only_the_rq_figures(client, data, token, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    found = families(scrape(client, **token))
    assert samples(found["ratchet_redis_up"]) == {(): 0}
    assert samples(found["ratchet_rq_queue_length"]) == {}
    assert samples(found["ratchet_workers_alive"]) == {(): 2}


def test_run_latency_is_a_cumulative_histogram_per_workflow(client, data, token):
    found = families(scrape(client, **token))
    latency = found["ratchet_run_duration_seconds"]
    assert latency.type == "histogram"
    buckets = {(s.labels["workflow"], s.labels["le"]): s.value for s in latency.samples if s.name.endswith("_bucket")}
    # alpha: 0.3 s, 4 s, 90 s.
    assert buckets[("alpha", "0.5")] == 1 and buckets[("alpha", "2.5")] == 1 and buckets[("alpha", "5.0")] == 2
    assert buckets[("alpha", "60.0")] == 2 and buckets[("alpha", "120.0")] == 3 and buckets[("alpha", "+Inf")] == 3
    # beta: 2 h.
    assert buckets[("beta", "3600.0")] == 0 and buckets[("beta", "14400.0")] == 1 and buckets[("beta", "+Inf")] == 1
    totals = {(s.name, s.labels["workflow"]): s.value for s in latency.samples if not s.name.endswith("_bucket")}
    assert totals[("ratchet_run_duration_seconds_count", "alpha")] == 3
    assert totals[("ratchet_run_duration_seconds_sum", "alpha")] == pytest.approx(94.3)
    assert totals[("ratchet_run_duration_seconds_sum", "beta")] == pytest.approx(7200)


def test_every_scrape_reads_the_database_anew(client, versions, token):
    alpha, _ = versions
    before = samples(families(scrape(client, **token))["ratchet_runs"])
    make_run(alpha, RunStatus.SUCCEEDED, timedelta(minutes=5), timedelta(seconds=1))
    after = samples(families(scrape(client, **token))["ratchet_runs"])
    assert before == {} and after == {(("failure_mode", ""), ("status", "succeeded"), ("workflow", "alpha")): 1}


def test_a_scrape_costs_the_same_few_queries_whatever_the_data(client, versions, token):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert scrape(client, **token).status_code == 200
        return len(queries)

    alpha, beta = versions
    empty = count()
    for i in range(30):
        version = alpha if i % 2 else beta
        run = make_run(version, [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.RUNNING][i % 3], timedelta(hours=1),
                       timedelta(seconds=i) if i % 3 != 2 else None)
        attempt(run, AttemptStatus.SCHEDULED, queue=f"q{i % 4}")
        effect(run, f"k{i}", EffectStatus.CONFIRMED, duplicates=i % 2)
        workers.beat(f"host.{i}", [f"q{i % 4}"])
    assert empty == count() == SCRAPE_QUERIES
