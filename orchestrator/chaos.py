"""The chaos check: real workers SIGKILLed and SIGSTOPped at random and Redis flushed under
load; paused runs decided the way an operator would; then the sink (outside the engine) is
compared with what the engine itself reports.

It can fail. With ``strict`` the sink deduplicates nothing, and the demo's effects cover the
three ways an unknown outcome is handled: the order pipeline's charge (and the research
workers' search calls) are checked downstream (``check``), the shipment passes its key
downstream (retried), the e-mail (and the research answer) can do neither (the run pauses for
an operator). A key the sink received twice that the engine neither counted nor showed is a
*silent* duplicate, and fails the check. ``workflow`` picks the demo: ``order_fulfilment``
(a pipeline), ``research`` (supervisor/worker: kills and freezes land during fan-out) or
``support_network`` (agents handing off: the refund a billing agent's tool makes and the reply
pass their keys downstream; kills land between model turns and inside tools),
``order_assistant`` (a single agent with tools in a loop) or ``refund`` (runs started by one
user wait for approval, which the command gives as a second user of the approvers group while
workers die and Redis is flushed; the reversal and the e-mail pass their keys downstream).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import Count, Q

from .conf import ratchet_setting
from .demo import sink
from .engine import approvals
from .engine.dispatch import redis_connection
from .engine.errors import InvalidTransition
from .engine.reconnect import with_db_retry
from .engine.runs import decide_effect, start_run
from .models import ApprovalRequest, ApprovalStatus, Effect, EffectStatus, Event, EventKind, Run, RunStatus
from .models.runs import TERMINAL_RUN_STATUSES
from .processes import WorkerPool


@dataclass
class ChaosOptions:
    workflow: str = "order_fulfilment"
    runs: int = 200
    workers: int = 3
    kill_every: float = 2.0
    flush_every: float | None = None
    pause_every: float | None = None
    strict: bool = False
    timeout: float = 900
    pack_seconds: float = 0.5
    effect_seconds: float = 0.2


@dataclass
class ChaosResult:
    runs: int
    succeeded: int
    failed: int
    resumed: int
    paused: int
    duplicate_effects: int  # keys the sink received more than once
    silent_duplicates: int  # ...of which the engine neither counted nor showed
    engine_duplicates: int  # keys the engine counted as executed twice
    possible_duplicates: int  # keys the engine retried after an execution of unknown outcome
    misreported: int  # keys the engine counted as duplicates that the sink received once
    lost_runs: int
    missing_effects: int
    seconds: float
    kills: int = 0
    freezes: int = 0
    flushes: int = 0
    decisions: Counter = field(default_factory=Counter)
    dedup_hits: int = 0

    @property
    def passed(self) -> bool:
        """Every run succeeded, none was lost, every duplicate the sink saw is one the engine
        reports (counted, or shown as a retry of an unknown outcome) and every duplicate the
        engine counted really happened."""
        return (self.succeeded == self.runs and self.silent_duplicates == 0 and self.lost_runs == 0
                and self.misreported == 0 and self.missing_effects == 0)

    def details(self) -> str:
        decided = ",".join(f"{k}:{v}" for k, v in sorted(self.decisions.items())) or "none"
        return (f"chaos: kills={self.kills} freezes={self.freezes} redis_flushes={self.flushes} "
                f"operator_decisions={decided} engine_duplicates={self.engine_duplicates} "
                f"possible_duplicates={self.possible_duplicates} misreported={self.misreported} "
                f"missing_effects={self.missing_effects} ledger_dedup_hits={self.dedup_hits}")

    def summary(self) -> str:
        return (f"chaos: runs={self.runs} succeeded={self.succeeded} failed={self.failed} resumed={self.resumed} "
                f"paused={self.paused} duplicate_effects={self.duplicate_effects} "
                f"silent_duplicates={self.silent_duplicates} lost_runs={self.lost_runs} seconds={self.seconds:.1f}")


def demo_order(batch: str, index: int, pack_seconds: float, effect_seconds: float = 0.0) -> dict:
    """Orders of varying size: about a third take the fraud-check branch (total >= 500)."""
    rng = random.Random(index)
    items = [{"sku": f"SKU-{rng.randint(1, 50)}", "qty": rng.randint(1, 3), "price": rng.choice([5, 40, 120, 260])}
             for _ in range(rng.randint(1, 4))]
    return {"order_id": f"chaos-{batch}-{index}", "customer": f"customer{index}@example.com", "items": items,
            "pack_seconds": pack_seconds, "effect_seconds": effect_seconds}


QUESTIONS = (
    "How many business days until my refund reaches the card?",
    "Do you ship express to Austria?",
    "How do I return a damaged parcel?",
    "Can business customers add a VAT number at checkout?",
    "Can I change the delivery address after ordering?",
    "How long does shipping abroad take?",
)


def research_question(batch: str, index: int, options: ChaosOptions) -> dict:
    return {"question": QUESTIONS[index % len(QUESTIONS)], "effect_seconds": options.effect_seconds}


def order_input(batch: str, index: int, options: ChaosOptions) -> dict:
    return demo_order(batch, index, options.pack_seconds, options.effect_seconds)


@dataclass(frozen=True)
class Workload:
    """A demo workflow under chaos: how to make run N's input, how many effects a run makes,
    and whether its runs wait for a second person's approval."""

    make_input: Callable[[str, int, ChaosOptions], dict]
    effects_per_run: int
    approvals: bool = False


SUPPORT_QUESTIONS = (
    "Refund the double charge, and the app crashes on start",
    "I was charged twice this month",
    "You billed me twice and now I cannot sign in",
)


def support_question(batch: str, index: int, options: ChaosOptions) -> dict:
    """Every question refunds the customer's double charge; some go on to technical support."""
    return {"question": SUPPORT_QUESTIONS[index % len(SUPPORT_QUESTIONS)], "customer": "ann@example.com",
            "effect_seconds": options.effect_seconds}


def order_question(batch: str, index: int, options: ChaosOptions) -> dict:
    """The single agent: orders that are out for delivery, not shipped yet, or unknown."""
    order = ("A-1001", "A-1002", "A-1003", "Z-404")[index % 4]
    return {"question": "Where is my order?", "order_id": order, "customer": f"customer{index}@example.com",
            "effect_seconds": options.effect_seconds}


def refund_request(batch: str, index: int, options: ChaosOptions) -> dict:
    """Refunds above the approval threshold, but one in five below it (no approval asked)."""
    amount = 40 if index % 5 == 4 else 120 + index % 7 * 10
    return {"order_id": f"chaos-{batch}-{index}", "amount": amount, "customer": f"customer{index}@example.com",
            "effect_seconds": options.effect_seconds}


WORKLOADS = {
    "order_fulfilment": Workload(order_input, 3),  # charge (check), shipment (key downstream), e-mail
    "research": Workload(research_question, 4),  # three search calls (check) in parallel, the answer
    "support_network": Workload(support_question, 2),  # the refund and the reply, both keyed downstream
    "order_assistant": Workload(order_question, 1),  # the reply, after one to three model turns
    "refund": Workload(refund_request, 2, approvals=True),  # the reversal and the e-mail, after approval
}
CHAOS_REQUESTER, CHAOS_APPROVER = "chaos-requester", "chaos-approver"


def chaos_people() -> tuple[Any, Any]:
    """Who starts the runs (an operator) and who approves them (an approver: four-eyes holds)."""
    from django.contrib.auth import get_user_model

    from .roles import ensure_role_groups

    groups = ensure_role_groups()
    users = get_user_model().objects
    requester = users.get_or_create(username=CHAOS_REQUESTER)[0]
    approver = users.get_or_create(username=CHAOS_APPROVER)[0]
    requester.groups.add(groups["operator"])
    approver.groups.add(groups["approver"])
    return requester, approver


def approve_as_a_second_person(run_ids: list, approver: Any) -> Counter:
    """Approve every pending request of these runs, as ``approver`` would from the inbox."""
    decisions: Counter = Counter()
    waiting = ApprovalRequest.objects.filter(run_id__in=run_ids, status=ApprovalStatus.PENDING)
    for request_id in waiting.values_list("pk", flat=True):
        try:
            if not without_waiting(partial(approvals.decide, request_id, approver, "approve",
                                           "approved by the chaos command")):
                continue
        except InvalidTransition:
            continue  # decided meanwhile, or its run ended
        decisions["approve"] += 1
    return decisions


def decide_like_an_operator(run_ids: list) -> Counter:
    """For each paused run: look the uncertain effect's key up at the sink, then say it
    "happened" (with what the sink has) or "retry"; retry a failed compensation."""
    decisions: Counter = Counter()
    paused = Effect.objects.filter(run_id__in=run_ids, run__status=RunStatus.PAUSED,
                                   status__in=(EffectStatus.UNCERTAIN, EffectStatus.COMPENSATION_FAILED))
    for effect in paused:
        if effect.status == EffectStatus.UNCERTAIN:
            seen = sink.lookup(effect.idempotency_key)
            decision, result = ("happened", seen) if seen else ("retry", None)
        else:
            decision, result = "retry", None
        try:
            if not without_waiting(partial(decide_effect, effect.pk, decision, result=result)):
                continue
        except InvalidTransition:
            continue  # moved on meanwhile (decided, or its run ended)
        decisions[decision] += 1
    return decisions


def without_waiting(decide: Callable[[], Any]) -> bool:
    """Make one decision, unless its run's row is locked for more than a second: a worker the
    chaos froze mid-transaction holds it, and the loop that would thaw that worker must not wait
    on it (the next round tries again). False when it gave up."""
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '1s'")
            decide()
    except OperationalError:
        return False
    return True


class _Chaos:
    def __init__(self, options: ChaosOptions, say: Callable[[str], None]):
        self.o = options
        self.say = say
        self.rng = random.Random()
        env = {"RATCHET_SINK_STRICT": "1"} if options.strict else {}
        self.pool = WorkerPool(env=env)
        self.frozen: dict[int, tuple[object, float]] = {}  # pid -> (process, thaw at)
        self.freeze_for = ratchet_setting("LEASE_SECONDS") * 1.5 + ratchet_setting("SWEEP_INTERVAL_SECONDS")
        self.kills = self.freezes = self.flushes = 0
        self.decisions: Counter = Counter()

    def kill_one(self) -> None:
        victims = self.pool.alive()
        if victims:
            victim = self.rng.choice(victims)
            self.frozen.pop(victim.pid, None)
            self.pool.kill(victim)
            self.pool.spawn()
            self.kills += 1

    def freeze_one(self) -> None:
        awake = [p for p in self.pool.alive() if p.pid not in self.frozen]
        if len(awake) > 1:  # keep one worker awake, or nothing moves
            victim = self.rng.choice(awake)
            self.pool.freeze(victim)
            self.frozen[victim.pid] = (victim, time.monotonic() + self.freeze_for)
            self.freezes += 1

    def thaw_due(self, now: float) -> None:
        for pid, (process, at) in list(self.frozen.items()):
            if now >= at:
                self.pool.thaw(process)  # type: ignore[arg-type]
                del self.frozen[pid]

    def run(self) -> ChaosResult:
        o = self.o
        batch = uuid.uuid4().hex[:8]
        started = time.monotonic()
        run_ids: list = []
        try:
            self.pool.start(o.workers)
            workload = WORKLOADS[o.workflow]
            requester, approver = chaos_people() if workload.approvals else (None, None)
            run_ids = [start_run(o.workflow, workload.make_input(batch, i, o), idempotency_key=f"chaos-{batch}-{i}",
                                 user=requester)[0].pk for i in range(o.runs)]
            self.say(f"chaos: started {o.runs} {o.workflow} runs (batch {batch}) on {o.workers} workers"
                     f"{' with a strict sink' if o.strict else ''}")
            timers = {"kill": started + o.kill_every,
                      "flush": started + o.flush_every if o.flush_every else None,
                      "freeze": started + o.pause_every if o.pause_every else None,
                      "report": started + 5}
            remaining = o.runs
            while remaining and time.monotonic() - started < o.timeout:
                now = time.monotonic()
                self.thaw_due(now)
                self.pool.replace_dead()  # as run_workers does: a worker that died on its own comes back
                if now >= timers["kill"]:
                    self.kill_one()
                    timers["kill"] = now + o.kill_every
                if timers["freeze"] is not None and now >= timers["freeze"]:
                    self.freeze_one()
                    timers["freeze"] = now + o.pause_every  # type: ignore[operator]
                if timers["flush"] is not None and now >= timers["flush"]:
                    redis_connection().flushdb()
                    self.flushes += 1
                    timers["flush"] = now + o.flush_every  # type: ignore[operator]
                self.decisions += with_db_retry(lambda: decide_like_an_operator(run_ids))
                if approver is not None:
                    self.decisions += with_db_retry(lambda: approve_as_a_second_person(run_ids, approver))
                if now >= timers["report"]:
                    self.say(f"chaos: t={now - started:.0f}s finished={o.runs - remaining}/{o.runs} "
                             f"kills={self.kills} freezes={self.freezes} flushes={self.flushes} "
                             f"decisions={sum(self.decisions.values())}")
                    timers["report"] = now + 5
                time.sleep(0.2)
                remaining = with_db_retry(
                    lambda: Run.objects.filter(pk__in=run_ids).exclude(status__in=TERMINAL_RUN_STATUSES).count()
                )
        finally:
            self.pool.stop()
        result = tally(run_ids, time.monotonic() - started, WORKLOADS[o.workflow].effects_per_run)
        result.kills, result.freezes, result.flushes, result.decisions = (
            self.kills, self.freezes, self.flushes, self.decisions)
        return result


def run_chaos(options: ChaosOptions, say: Callable[[str], None] = print) -> ChaosResult:
    return _Chaos(options, say).run()


def tally(run_ids: list, seconds: float, effects_per_run: int) -> ChaosResult:
    """Compare what the sink received with what the engine reports, key by key."""
    runs = Run.objects.filter(pk__in=run_ids)
    counts = runs.aggregate(
        succeeded=Count("pk", filter=Q(status=RunStatus.SUCCEEDED)),
        failed=Count("pk", filter=Q(status__in=[RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.COMPENSATED])),
        resumed=Count("pk", filter=Q(resume_count__gt=0)),
        lost=Count("pk", filter=~Q(status__in=TERMINAL_RUN_STATUSES)),
    )
    paused = Event.objects.filter(run_id__in=run_ids, kind=EventKind.RUN_PAUSED).values("run_id").distinct().count()
    delivered = sink.delivery_counts()
    effects = list(Effect.objects.filter(run_id__in=run_ids))
    received_twice = {e.idempotency_key for e in effects if delivered.get(e.idempotency_key, 0) > 1}
    counted = {e.idempotency_key for e in effects if e.duplicates > 0}
    possible = {e.idempotency_key for e in effects if e.unknown_retries > 0}
    succeeded_ids = set(runs.filter(status=RunStatus.SUCCEEDED).values_list("pk", flat=True))
    recorded = Counter(e.run_id for e in effects if e.run_id in succeeded_ids
                       and delivered.get(e.idempotency_key, 0) > 0)
    missing = sum(effects_per_run - recorded[run_id] for run_id in succeeded_ids)
    return ChaosResult(
        runs=len(run_ids), succeeded=counts["succeeded"], failed=counts["failed"], resumed=counts["resumed"],
        paused=paused, duplicate_effects=len(received_twice),
        silent_duplicates=len(received_twice - counted - possible), engine_duplicates=len(counted),
        possible_duplicates=len(possible), misreported=len(counted - received_twice), lost_runs=counts["lost"],
        missing_effects=missing, seconds=seconds, dedup_hits=sum(e.dedup_hits for e in effects),
    )
