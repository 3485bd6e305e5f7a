"""The Queues page: per-queue work from the database, RQ's lists from Redis (or a note that Redis
is down), which live worker reads each queue and what it runs, the last hour's worker deaths;
its 5-second fragment, and its fixed query count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orchestrator.engine import workers
from orchestrator.models import AttemptStatus, RunStatus

from . import test_metrics
from .test_metrics import attempt, make_run

# The metrics tests' fixtures: two published workflows, and hand-counted runs, attempts and workers.
versions = test_metrics.versions
data = test_metrics.data

pytestmark = pytest.mark.django_db

# Session and user (login), the user's permissions (its own, its groups'), then queue stats, live
# workers, their running attempts, recent deaths.
FRAGMENT_QUERIES = 2 + 2 + 4


@pytest.fixture
def page_data(data):
    alpha, beta = data
    gpu = make_run(alpha, RunStatus.RUNNING, timedelta(minutes=30))
    attempt(gpu, AttemptStatus.SCHEDULED, queue="gpu", ago=timedelta(minutes=12), state_name="render")
    old = make_run(beta, RunStatus.FAILED, timedelta(hours=3))
    attempt(old, AttemptStatus.LOST, queue="slow", worker="host.old", finished_at=timezone.now() - timedelta(hours=2))
    return data


def get(client, **query):
    return client.get(reverse("monitoring:queues"), query)


def test_the_page_needs_login(client):
    response = get(client)
    assert response.status_code == 302 and "/login/" in response.url


def test_each_queue_shows_its_work_its_readers_and_rqs_list(viewer, page_data, redis_conn):
    redis_conn.rpush("rq:queue:slow", "job-1", "job-2", "job-3")
    text = get(viewer).content.decode()
    assert "Queues and workers" in text and "Redis is not answering" not in text
    assert "3 jobs" in text and "0 jobs" in text
    assert "2 workers</span>" in text and "1 worker</span>" in text
    # A queue nobody reads is said in words, on the row and above the table.
    assert "No live worker reads this queue" in text
    assert "No live worker reads 1 queue:" in text and "gpu" in text and "(not in RQ_QUEUES)" in text
    assert "12 min" in text  # the gpu attempt has waited 12 minutes


def test_workers_show_what_they_run_and_recent_deaths_their_lost_attempts(viewer, page_data):
    response = get(viewer)
    workers_part = response.content.decode().split("Workers alive", 1)[1].split("Worker deaths", 1)[0]
    assert "host.1" in workers_part and "host.2" in workers_part and "idle" in workers_part
    assert "beta · a" in workers_part and "since" in workers_part and "2 min" in workers_part
    deaths_part = response.content.decode().split("Worker deaths, last hour", 1)[1]
    assert "host.9" in deaths_part
    assert "host.old" not in deaths_part  # lost two hours ago


def test_each_pool_of_workers_shows_its_queues_and_how_many_are_busy(viewer, page_data):
    pools = get(viewer).content.decode().split("<h2>Pools</h2>", 1)[1].split("</table>", 1)[0]
    rows = [row.split("</th>")[0] for row in pools.split('<th scope="row">')[1:]]
    assert rows == ["default", "default, slow"]  # host.2 reads default; host.1 reads default and slow
    assert '<th scope="row">default, slow</th><td><span title="host.1">1</span></td><td>1</td><td>0</td>' in pools


def test_attempts_running_on_a_worker_not_seen_lately_are_pointed_out(viewer, page_data):
    workers.gone("host.1")  # its attempt on the busy run is still marked running
    text = get(viewer).content.decode()
    assert "1 attempt still marked running on a worker not seen lately" in text and "(host.1)" in text


def test_no_worker_and_no_death_say_what_to_do(viewer, versions):
    text = get(viewer).content.decode()
    assert "No worker is alive" in text and "No worker died in the last hour" in text
    assert text.count("No live worker reads this queue") == 2  # default and slow, both configured


def test_redis_down_is_said_on_the_page_not_a_500(viewer, page_data, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = get(viewer)
    text = response.content.decode()
    assert response.status_code == 200
    assert "Redis is not answering" in text and "unknown (Redis down)" in text
    assert "host.1" in text


def test_the_page_polls_its_fragment_every_five_seconds(viewer, page_data):
    page = get(viewer).content.decode()
    url = reverse("monitoring:queues") + "?fragment=1"
    assert f'hx-get="{url}"' in page and 'hx-trigger="every 5s"' in page
    assert f'href="{reverse("monitoring:queues")}" aria-current="page"' in page
    fragment = get(viewer, fragment="1")
    text = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in text and "<nav" not in text
    assert "host.9" in text and "gpu" in text


def test_the_page_costs_a_fixed_number_of_queries(viewer, versions):
    alpha, beta = versions

    def count(**query) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert get(viewer, **query).status_code == 200
        return len(queries)

    empty_fragment, empty_page = count(fragment="1"), count()
    for i in range(20):
        run = make_run(alpha if i % 2 else beta, RunStatus.RUNNING, timedelta(minutes=10))
        attempt(run, AttemptStatus.RUNNING, queue=f"q{i % 3}", worker=f"host.{i % 4}",
                claimed_at=timezone.now() - timedelta(seconds=i))
        attempt(run, AttemptStatus.SCHEDULED, queue=f"q{i % 5}")
        attempt(run, AttemptStatus.LOST, queue="default", worker=f"host.dead{i % 3}", finished_at=timezone.now())
        workers.beat(f"host.{i % 4}", [f"q{i % 3}", "default"])
    assert empty_fragment == count(fragment="1") == FRAGMENT_QUERIES
    assert empty_page == count()


def test_the_admin_does_not_link_the_broken_django_rq_dashboard(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw"))
    text = client.get(reverse("admin:index")).content.decode()
    assert "django_rq" not in text.lower() and "/django-rq/" not in text
