"""``manage.py run_stack``: everything ``make run`` needs, in one supervised process.

Migrates, makes sure the demo login exists, loads the demo workflows, starts a local Redis
(unless REDIS_URL is set), the workers and the web server, then supervises them. Ctrl-C or
SIGTERM stops what it started: web server, then workers, then Redis (workers still running
when Redis goes away log connection errors).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from orchestrator.localredis import LocalRedis, LocalRedisError, start_local_redis
from orchestrator.processes import MANAGE, WorkerPools, parse_pools, stop_process
from orchestrator.stack import HOST, answers, ensure_demo_role_users, ensure_demo_user, port_is_free


class Command(BaseCommand):
    help = "Run Ratchet locally: migrate, demo data, Redis (unless REDIS_URL), workers and web server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--workers", type=int, default=2, help="worker processes on default and slow (default 2)")
        parser.add_argument("--pools", nargs="+", default=None, metavar="QUEUE=N",
                            help="pools of workers per queue instead (bulkheads), e.g. --pools default=2 slow=1")
        parser.add_argument("--port", type=int, default=8000, help="web server port on 127.0.0.1 (default 8000)")

    def handle(self, workers: int, port: int, pools: list[str] | None, **options: Any) -> None:
        # Set explicitly: a process started with SIGINT ignored would otherwise ignore Ctrl-C.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        try:
            layout = parse_pools(pools) if pools else [(["default", "slow"], workers)]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not port_is_free(port):
            raise CommandError(f"port {port} is in use: pick another with `make run ARGS='--port 8001'`")
        call_command("migrate", interactive=False, verbosity=1)
        login = ensure_demo_user()
        self.role_users = ensure_demo_role_users()
        call_command("load_demo")
        connections.close_all()  # the supervisor needs no database from here on
        self.stopping = False
        self.redis: LocalRedis | None = None
        self.pool: WorkerPools | None = None
        self.web: subprocess.Popen[bytes] | None = None
        # From here on a signal only sets a flag: each start below completes, then we stop.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._request_stop)
        try:
            self._start(layout, port)
            if not self.stopping:
                self._banner(port, login)
                self._supervise()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
            self._stop_all()

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _start(self, layout: list[tuple[list[str], int]], port: int) -> None:
        if not os.environ.get("REDIS_URL"):
            try:
                self.redis = start_local_redis(settings.VAR_DIR / "redis")
            except LocalRedisError as exc:
                raise CommandError(str(exc)) from exc
            os.environ["REDIS_URL"] = self.redis.url  # inherited by every child process
        settings.REDIS_URL = os.environ["REDIS_URL"]
        if self.stopping:
            return
        self.pool = WorkerPools(layout, env={"REDIS_URL": os.environ["REDIS_URL"]})
        self.pool.start()
        web_env = {**os.environ}
        web_env.setdefault("DEBUG", "1")  # runserver serves static files only with DEBUG on
        # Own session: the terminal's Ctrl-C reaches only this supervisor, which stops things in order.
        self.web = subprocess.Popen([sys.executable, MANAGE, "runserver", f"{HOST}:{port}", "--noreload"],
                                    env=web_env, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.stopping and not answers(port):
            if self.web.poll() is not None or time.monotonic() > deadline:
                raise CommandError(f"the web server did not start on {HOST}:{port} (see its output above)")
            time.sleep(0.1)

    def _banner(self, port: int, login: str) -> None:
        db = settings.DATABASES["default"]
        database = f"{db['ENGINE'].rsplit('.', 1)[-1]} {db.get('NAME')}"
        redis = f"{settings.REDIS_URL}" + (" (started here)" if self.redis else " (from REDIS_URL)")
        rule = "-" * 72
        self.stdout.write(self.style.SUCCESS(f"\n{rule}\n Ratchet is running\n{rule}"))
        for label, value in [
            ("dashboard", f"http://{HOST}:{port}/"),
            ("admin", f"http://{HOST}:{port}/admin/"),
            ("login", login),
            *(("", line) for line in self.role_users),
            ("workers", self.pool.describe() if self.pool else "none"),
            ("redis", redis),
            ("database", database),
        ]:
            self.stdout.write(f"  {label:<10} {value}")
        self.stdout.write(f"{rule}\n Ctrl-C stops everything.\n{rule}\n")
        self.stdout.flush()

    def _supervise(self) -> None:
        assert self.pool is not None and self.web is not None
        while not self.stopping:
            if self.web.poll() is not None:
                raise CommandError(f"the web server exited (code {self.web.returncode}); stopping everything")
            for pid in self.pool.replace_dead():
                self.stderr.write(f"worker {pid} exited; started a replacement")
            time.sleep(0.5)

    def _stop_all(self) -> None:
        """Web server first, then workers, then Redis: nothing this command started stays behind."""
        self.stdout.write("stopping: web server, workers, redis ...")
        if self.web is not None:
            stop_process(self.web)
        if self.pool is not None:
            self.pool.stop()
        if self.redis is not None:
            self.redis.stop()
        self.stdout.write("stopped.")
