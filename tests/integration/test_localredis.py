"""The Redis that ``make run`` starts: a real redis-server process on a unix socket, no database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from orchestrator.localredis import LocalRedisError, start_local_redis

pytestmark = pytest.mark.integration


def test_local_redis_serves_rq_and_stops(tmp_path: Path) -> None:
    server = start_local_redis(tmp_path / "redis")
    try:
        socket_path = (tmp_path / "redis" / "redis.sock").resolve()
        assert server.url == f"unix://{socket_path}?db=0"
        conn = Redis.from_url(server.url)
        assert conn.ping()
        assert conn.config_get("port") == {"port": "0"}  # the unix socket only, no TCP port

        queue = Queue("localredis-test", connection=conn)
        job = queue.enqueue("operator.add", 2, 3)
        assert queue.job_ids == [job.id]
        SimpleWorker([queue], connection=conn).work(burst=True)
        assert job.return_value(refresh=True) == 5

        with pytest.raises(LocalRedisError, match="already answers"):
            start_local_redis(tmp_path / "redis")  # would steal the socket from the running server
        assert conn.ping()
        conn.close()
    finally:
        server.stop()

    assert server.process.returncode == 0  # a clean shutdown on SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    assert not server.socket_path.exists()
