import os
import socket

from django.conf import settings
from django.core.management.base import BaseCommand
from redis import Redis
from rq import Queue

from orchestrator.engine.worker import RatchetForkingWorker, RatchetWorker


class Command(BaseCommand):
    help = "Run one RQ worker (with the recovery sweeper) in this process."

    def add_arguments(self, parser):
        parser.add_argument("--queues", nargs="+", default=["default", "slow"])
        parser.add_argument("--fork", action="store_true", help="fork a work horse per job")
        parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
        parser.add_argument("--name", default=None)

    def handle(self, queues, fork, burst, name, **options):
        connection = Redis.from_url(settings.REDIS_URL)
        worker_class = RatchetForkingWorker if fork else RatchetWorker
        name = name or f"{socket.gethostname()}.{os.getpid()}"
        os.environ["RATCHET_WORKER_NAME"] = name  # attempts carry the name RQ and the heartbeats use
        worker = worker_class([Queue(q, connection=connection) for q in queues], connection=connection, name=name)
        worker.work(burst=burst, logging_level=os.environ.get("RATCHET_LOG_LEVEL", "WARNING"))
