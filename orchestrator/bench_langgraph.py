"""LangGraph with its PostgreSQL checkpointer, measured the way the engine is
(``manage.py bench``'s ``langgraph_*`` figures). Imported only when the bench runs: the app
never needs LangGraph (``make bench`` installs the ``bench`` extra).

- chain: ``graphs`` invocations of a graph of ten no-op nodes in a line, compiled with
  ``PostgresSaver`` on its own database of the engine's PostgreSQL server, ``durability="sync"``
  (each super-step's checkpoint is written before the next step starts, as the engine
  checkpoints each step before the next). They run on ``executors`` processes, each with its
  own connection and its share of the graphs, under distinct thread ids. steps/s = nodes
  executed (summed from each invocation's final state) / wall time from the executors'
  release to the last executor's last invocation returning (bench_procs.py). Every thread
  must then have at least one checkpoint per node in the ``checkpoints`` table, or the
  figure is refused.
- node latency, serial: one graph at a time in this process; the gap between the start of a
  node and the start of the next node of the same invocation (it covers the previous node's
  checkpoint and the scheduling of the next), p50 over every gap.
- fan-out: a node that fans out (static edges) to ``branches`` parallel no-op nodes, joined
  by a final node; wall time of each ``invoke`` in this process, one after another.
"""

from __future__ import annotations

import contextlib
import operator
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from .bench_procs import Progress, Tick, run_parallel
from .bench_rounds import median

CHAIN_NODES = 10
SERIAL_GRAPHS = 20
CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
INSTALL_HINT = ("LangGraph is not installed in this environment: `make bench` installs it (the `bench` extra: "
                "pip install -e '.[test,bench]'), or pass --no-langgraph to skip it")


class Steps(TypedDict):
    steps: Annotated[int, operator.add]


@dataclass(frozen=True)
class LangGraphResult:
    steps: int
    seconds: float
    checkpoints: int
    node_ms_p50_serial: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    per_s = steps_per_s


def require_langgraph() -> None:
    """Raise RuntimeError with how to install LangGraph if it cannot be imported."""
    try:
        import langgraph.checkpoint.postgres  # noqa: F401
        import langgraph.graph  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"{INSTALL_HINT} ({exc})") from exc


def prepare_database(conninfo: dict[str, Any], progress: Progress) -> None:
    """Create LangGraph's database if it is missing, and its checkpoint tables (``setup()``)."""
    import psycopg
    from psycopg import sql

    server = {key: value for key, value in conninfo.items() if key != "dbname"}
    with psycopg.connect(**server, dbname="postgres", autocommit=True) as maintenance:
        exists = maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", [conninfo["dbname"]]).fetchone()
        if not exists:
            maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(conninfo["dbname"])))
            progress(f"langgraph: created database {conninfo['dbname']}")
    with _saver(conninfo) as saver:
        saver.setup()


def measure_chain(graphs: int, executors: int, conninfo: dict[str, Any], progress: Progress) -> LangGraphResult:
    """The chain figure (module docstring); clears the checkpoint tables first (not timed)."""
    _clear(conninfo)
    shares = [graphs // executors + (1 if i < graphs % executors else 0) for i in range(executors)]
    result = run_parallel(
        f"{__name__}:prepare_executor",
        [{"conninfo": conninfo, "prefix": f"bench-{i}", "graphs": n} for i, n in enumerate(shares) if n],
        "langgraph", "graphs", graphs, timeout=60 + graphs * CHAIN_NODES * 0.05, progress=progress)
    checkpoints = _check_checkpoints(conninfo, graphs, CHAIN_NODES)
    return LangGraphResult(steps=result.done, seconds=result.seconds, checkpoints=checkpoints,
                           node_ms_p50_serial=node_ms_p50_serial(min(graphs, SERIAL_GRAPHS), conninfo))


def prepare_executor(conninfo: dict[str, Any], prefix: str, graphs: int) -> Callable[[Tick], int]:
    """Connect and compile (not timed); ``run`` invokes the chain ``graphs`` times."""
    graph = chain_graph(_saver_on(_connect(conninfo)))  # the connection lives as long as the process

    def run(tick: Tick) -> int:
        nodes = 0
        for i in range(graphs):
            nodes += _invoke(graph, f"{prefix}-{i}", CHAIN_NODES)
            tick(1)
        return nodes

    return run


def node_ms_p50_serial(graphs: int, conninfo: dict[str, Any]) -> float:
    """Per-node latency, one graph at a time (module docstring)."""
    stamps: list[float] = []
    gaps: list[float] = []
    with _saver(conninfo) as saver:
        graph = chain_graph(saver, stamps)
        for i in range(graphs):
            stamps.clear()
            _invoke(graph, f"serial-{i}", CHAIN_NODES)
            gaps += [(b - a) * 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
    return median(gaps)


def measure_fanout(branches: int, repeats: int, conninfo: dict[str, Any], progress: Progress) -> list[float]:
    """Milliseconds of each ``invoke`` of the fan-out graph, one after another."""
    _clear(conninfo)
    timings: list[float] = []
    with _saver(conninfo) as saver:
        graph = fanout_graph(saver, branches)
        for repeat in range(repeats):
            started = time.perf_counter()
            _invoke(graph, f"fanout-{repeat}", branches + 2)
            timings.append((time.perf_counter() - started) * 1000)
            progress(f"langgraph fanout: invoke {repeat + 1}/{repeats} took {timings[-1]:.1f} ms")
    _check_checkpoints(conninfo, repeats, 3)
    return timings


def chain_graph(saver: Any, stamps: list[float] | None = None) -> Any:
    """Ten no-op nodes in a line; each adds 1 to ``steps`` (and notes its start in ``stamps``)."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(Steps)
    names = [f"n{i}" for i in range(CHAIN_NODES)]
    for name in names:
        builder.add_node(name, _noop(stamps))
    for a, b in zip([START, *names], [*names, END], strict=True):
        builder.add_edge(a, b)
    return builder.compile(checkpointer=saver)


def fanout_graph(saver: Any, branches: int) -> Any:
    """``fan`` -> ``branches`` parallel no-op nodes -> ``join`` (which waits for all of them)."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(Steps)
    names = [f"b{i}" for i in range(branches)]
    builder.add_node("fan", _noop(None))
    builder.add_node("join", _noop(None))
    for name in names:
        builder.add_node(name, _noop(None))
        builder.add_edge("fan", name)
    builder.add_edge(START, "fan")
    builder.add_edge(names, "join")
    builder.add_edge("join", END)
    return builder.compile(checkpointer=saver)


def _noop(stamps: list[float] | None) -> Callable[[Steps], dict[str, int]]:
    def node(state: Steps) -> dict[str, int]:
        if stamps is not None:
            stamps.append(time.perf_counter())
        return {"steps": 1}

    return node


def _invoke(graph: Any, thread_id: str, expected: int) -> int:
    """One durable invocation; returns the nodes it executed (checked against ``expected``)."""
    state = graph.invoke({"steps": 0}, {"configurable": {"thread_id": thread_id}}, durability="sync")
    if state["steps"] != expected:
        raise RuntimeError(f"langgraph: thread {thread_id} executed {state['steps']} nodes, not {expected}")
    return state["steps"]


@contextlib.contextmanager
def _saver(conninfo: dict[str, Any]) -> Iterator[Any]:
    """A PostgresSaver on its own connection (autocommit and dict rows, as the saver requires),
    closed on leaving."""
    with _connect(conninfo) as connection:
        yield _saver_on(connection)


def _connect(conninfo: dict[str, Any]) -> Any:
    import psycopg
    from psycopg.rows import dict_row

    return psycopg.connect(**conninfo, autocommit=True, row_factory=dict_row)


def _saver_on(connection: Any) -> Any:
    from langgraph.checkpoint.postgres import PostgresSaver

    return PostgresSaver(connection)


def _clear(conninfo: dict[str, Any]) -> None:
    import psycopg

    with psycopg.connect(**conninfo, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {', '.join(CHECKPOINT_TABLES)}")


def _check_checkpoints(conninfo: dict[str, Any], threads: int, per_thread: int) -> int:
    """Count the checkpoints written; refuse if a thread has fewer than ``per_thread``."""
    import psycopg

    query = """SELECT count(*), coalesce(min(n), 0), coalesce(sum(n), 0) FROM (
                   SELECT count(*) AS n FROM checkpoints WHERE thread_id NOT LIKE 'serial-%' GROUP BY thread_id) t"""
    with psycopg.connect(**conninfo, autocommit=True) as connection:
        found, fewest, total = connection.execute(query).fetchone()
    if found != threads or fewest < per_thread:
        raise RuntimeError(f"langgraph: {found} threads with checkpoints (expected {threads}), the fewest has "
                           f"{fewest} checkpoints (expected at least {per_thread}): durability is not what it claims")
    return int(total)
