"""One synthetic run, walked through its definition as the engine would have run it (for
``orchestrator.loadgen``): attempts, retries, resumes, effects, failures and events, as rows.

The walk follows the published definition: task, agent and wait states get attempts (those of
parallel branches carry their branch path and overlap in time), choices and routes are picked at
random among the allowed ones, handoffs count toward the delegation depth. A failure is what
``runstate.fail_run`` stores: failure mode, error, failure state and fingerprint, and the saga
of the confirmed effects that have a compensation. Times are seconds from the run's creation
until ``finish`` turns them into moments and gives the rows their ids.
"""

from __future__ import annotations

import random
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .conf import ratchet_setting
from .engine.definition import Definition, State
from .engine.errors import engine_error
from .engine.fingerprints import fingerprint
from .models import EventKind as K

# Failure modes of failed runs (a fail state in the definition adds "rejected" on its own).
FAILURES = (("handler_error", 55), ("timeout", 12), ("context_loss", 8), ("throttling", 8),
            ("cost_explosion", 7), ("lost_progress", 3), ("duplicate_side_effect", 2))
HANDLER_ERRORS = (
    ("RuntimeError", "upstream service unavailable (HTTP 503, request {hex})"),
    ("ValueError", "invalid amount {n} for order A-{n}"),
    ("KeyError", "'{word}'"),
    ("ConnectionError", "connection to 10.0.{n}.{n}:5432 refused"),
)
WORDS = ("sku", "customer", "total", "items", "address", "currency")
# The effects the demo handlers record (ctx.effect): handler -> (key, compensation).
EFFECTS = {
    "demo.charge_payment": ("charge", "orchestrator.demo.handlers.refund_payment"),
    "demo.ship_order": ("shipment", ""), "demo.notify_customer": ("email", ""),
    "demo.send_reminder": ("reminder", ""), "demo.send_reply": ("reply", ""),
    "demo.publish_summary": ("publish", ""), "demo.publish_answer": ("publish", ""),
    "demo.retrieve": ("search_call", ""),
}
TOKEN_HANDLERS = ("summar", "extract", "draft", "plan")
HOSTS = ("ip-10-0-1-17", "ip-10-0-1-42", "ip-10-0-2-9", "ip-10-0-2-31")
P_RETRY, P_LOST, P_CAUGHT = 0.06, 0.01, 0.3
USD_PER_TOKEN = Decimal("0.000002")

RUN_COLUMNS = (
    "id", "workflow_id", "version_id", "status", "input", "context_base", "output", "error", "failure_mode",
    "failed_attempt_id", "pause_reason", "failure_state", "failure_fingerprint", "idempotency_key", "started_by_id",
    "created_at", "finished_at", "deadline_at", "steps_used", "tokens_used", "depth_used", "cost_used",
    "resume_count", "redrive_count", "human_wait_seconds", "parent_id", "parent_attempt_id", "budget_caps")
ATTEMPT_COLUMNS = (
    "id", "run_id", "kind", "state_name", "branch_path", "sequence", "attempt", "status", "queue", "input", "output",
    "error", "failure_mode", "resumed_from_id", "effect_id", "line_id", "not_before", "dispatched_at",
    "dispatch_count", "claim_deadline_seconds", "claim_token", "worker", "lease_expires_at", "heartbeat_at",
    "progress", "timeout_at", "scheduled_at", "claimed_at", "finished_at", "tokens", "cost")
EVENT_COLUMNS = ("id", "run_id", "attempt_id", "kind", "state_name", "data", "actor_id", "created_at")
EFFECT_COLUMNS = (
    "id", "run_id", "attempt_id", "key", "scope", "state_name", "sequence", "branch_path", "queue", "status",
    "downstream_idempotent", "result", "error", "compensate", "executions", "completed_by", "duplicates",
    "unknown_retries", "dedup_hits", "intent_at", "confirmed_at", "compensated_at", "decided_by_id", "decision")



@dataclass
class Plan:
    """A published workflow version the loader starts runs of."""

    workflow_id: int
    version_id: int
    name: str
    version_number: int
    definition: Definition
    sample_input: Any
    expected_events: float = 0.0


class Ids:
    """Next ids of the tables whose rows point at each other (chosen here, not read back)."""

    def __init__(self, attempt: int = 1, event: int = 1, effect: int = 1) -> None:
        self.attempt, self.event, self.effect = attempt, event, effect


@dataclass
class _Attempt:
    row: dict[str, Any]
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Built:
    run: tuple
    attempts: list[tuple]
    events: list[tuple]
    effects: list[tuple]
    status: str


class RunBuilder:
    """Walks one run through its definition; times are seconds from the run's creation."""

    def __init__(self, rng: random.Random, plan: Plan, outcome: str, failure: str = "") -> None:
        self.rng, self.plan, self.defn = rng, plan, plan.definition
        self.outcome, self.failure = outcome, failure
        self.t, self.steps, self.depth, self.resumes = 0.0, 0, 0, 0
        self.attempts: list[_Attempt] = []
        self.run_events: list[tuple[float, str, str, dict[str, Any], _Attempt | None]] = []
        self.effects: list[dict[str, Any]] = []
        self.error: dict[str, Any] | None = None
        self.mode = self.failure_state = ""
        self.failed: _Attempt | None = None
        self.status = "succeeded"

    # events and attempts ---------------------------------------------------------------------

    def event(self, at: float, kind: str, state: str = "", attempt: _Attempt | None = None, **data: Any) -> None:
        self.run_events.append((at, kind, state or (attempt.row["state_name"] if attempt else ""), data, attempt))

    def new_attempt(self, state: State, seq: int, path: str, number: int, *, delay: float = 0.0,
                    resumed_from: _Attempt | None = None, kind: str = "step", effect: dict | None = None) -> _Attempt:
        at = self.t
        row = {"kind": kind, "state_name": state.name, "branch_path": path, "sequence": seq, "attempt": number,
               "queue": state.queue, "scheduled_at": at, "not_before": at + delay if delay else None,
               "dispatched_at": None if delay else at, "dispatch_count": 0 if delay else 1,
               "resumed_from": resumed_from, "effect": effect, "tokens": 0, "cost": Decimal(0)}
        attempt = _Attempt(row)
        self.attempts.append(attempt)
        self.event(at, K.STEP_SCHEDULED, attempt=attempt, sequence=seq, attempt_number=number,
                   delay_seconds=round(delay, 3), inline=False)
        return attempt

    def claim(self, attempt: _Attempt) -> None:
        row = attempt.row
        due = row["not_before"] or row["scheduled_at"]
        wait = self.rng.lognormvariate(-3.2, 1.0)
        row["claimed_at"] = self.t = due + wait
        row["worker"] = self.worker_slot()
        self.event(self.t, K.STEP_CLAIMED, attempt=attempt, worker=row["worker"],
                   queue_wait_ms=round((self.t - row["scheduled_at"]) * 1000, 1))

    def worker_slot(self) -> int:
        return self.rng.randrange(len(HOSTS))

    def run_for(self, state: State) -> None:
        """The attempt runs: the clock moves by a duration fit for the state's kind."""
        if state.type == "agent":
            self.t += self.rng.lognormvariate(0.9, 0.5)
        elif state.type == "wait":
            self.t += 0.005
        elif state.heartbeat_seconds:
            self.t += self.rng.lognormvariate(1.3, 0.4)
        else:
            self.t += self.rng.lognormvariate(-1.2, 1.0)

    def end_attempt(self, attempt: _Attempt, status: str, *, error: dict | None = None, mode: str = "") -> None:
        row = attempt.row
        row.update(status=status, finished_at=self.t, error=error, failure_mode=mode)
        if status == "succeeded":
            row["output"] = {"ok": True}
        name = row["state_name"]
        if (state := self.defn.states.get(name)) is not None and (
                state.type == "agent" or any(w in (state.handler or "") for w in TOKEN_HANDLERS)):
            row["tokens"] = self.rng.randrange(300, 3000)
            row["cost"] = USD_PER_TOKEN * row["tokens"]

    # one visit of a state with attempts --------------------------------------------------------

    def visit(self, state: State, seq: int, path: str, stop: str) -> str:
        """Every attempt of one visit; returns "ok", "caught", "failed" or "stopped"."""
        number, previous, effect = 1, None, None
        effect_spec = EFFECTS.get(state.handler or "")
        if not stop and self.rng.random() < P_LOST:  # the worker died; the sweeper resumes the step
            attempt = self.new_attempt(state, seq, path, number)
            self.claim(attempt)
            if effect_spec:
                effect = self.record_effect(state, seq, path, attempt, effect_spec)
            self.t += ratchet_setting("LEASE_SECONDS") + self.rng.uniform(0, 5)
            self.end_attempt(attempt, "lost")
            self.event(self.t, K.STEP_LOST, attempt=attempt, worker=attempt.row["worker"])
            number, previous = 2, attempt
            self.resumes += 1
        if stop == "fail" and self.failure == "lost_progress":
            return self.lose_forever(state, seq, path, number, previous)
        caught = bool(not stop and state.catch and self.rng.random() < P_CAUGHT)
        most = max((r.max_attempts for r in state.retry), default=1)
        tries = 1
        if (stop == "fail" and self.failure in ("handler_error", "throttling")) or caught:
            tries = most
        elif not stop and most > 1 and self.rng.random() < P_RETRY:
            tries = self.rng.randrange(2, most + 1)
        mode = self.failure if stop == "fail" else "handler_error"
        rule = state.retry[0] if state.retry else None
        for i in range(tries):
            delay = self.backoff(rule, i)
            resumed = previous if i == 0 else None
            attempt = self.new_attempt(state, seq, path, number + i, delay=delay, resumed_from=resumed)
            if resumed is not None:
                self.event(self.t, K.STEP_RESUMED, attempt=attempt, lost_attempt=resumed)
            self.claim(attempt)
            self.run_for(state)
            last = i == tries - 1
            if last and not stop and not caught:
                if effect_spec and effect is None:
                    effect = self.record_effect(state, seq, path, attempt, effect_spec)
                elif effect is not None:  # confirmed by the lost attempt: the ledger returns its result
                    effect["dedup_hits"] += 1
                    self.event(self.t, K.EFFECT_DEDUP_HIT, attempt=attempt, key=effect["key"])
                self.end_attempt(attempt, "succeeded")
                self.event(self.t, K.STEP_SUCCEEDED, attempt=attempt,
                           duration_ms=round((self.t - attempt.row["claimed_at"]) * 1000, 2))
                return "ok"
            if last and stop == "cancel":
                self.end_attempt(attempt, "cancelled")
                self.event(self.t, K.STEP_FAILED, attempt=attempt, reason="run cancelled", status="cancelled")
                return "stopped"
            if last and stop == "run":
                attempt.row.update(status="running", claim_token=uuid.UUID(int=self.rng.getrandbits(128), version=4))
                return "stopped"
            error, status = self.failure_for(state, mode, transient=caught or not last)
            self.end_attempt(attempt, status, error=error, mode=mode)
            self.event(self.t, K.STEP_TIMED_OUT if status == "timed_out" else K.STEP_FAILED, attempt=attempt,
                       error=error, failure_mode=mode)
            if not last:
                self.event(self.t, K.STEP_RETRIED, attempt=attempt, delay_seconds=round(self.backoff(rule, i + 1), 3),
                           failures=i + 1)
            elif caught:
                self.event(self.t, K.STEP_CAUGHT, attempt=attempt, next=state.catch[0].next, error_type=error["type"])
                return "caught"
            else:
                self.fail(error, mode, state.name, attempt)
                return "failed"
        raise AssertionError("a visit ends with its last try")

    @staticmethod
    def backoff(rule: Any, retry: int) -> float:
        """The delay before try ``retry + 1`` (0 for the first), as the state's first retry rule says."""
        if not retry or rule is None:
            return 0.0
        delay = rule.interval_seconds * rule.backoff_rate ** (retry - 1)
        return min(delay, rule.max_interval_seconds) if rule.max_interval_seconds else delay

    def lose_forever(self, state: State, seq: int, path: str, number: int, previous: _Attempt | None) -> str:
        """A step whose worker dies every time: resumed until MAX_RESUMES_PER_STEP, then failed."""
        limit = int(ratchet_setting("MAX_RESUMES_PER_STEP"))
        lost = 0
        while True:
            attempt = self.new_attempt(state, seq, path, number, resumed_from=previous)
            if previous is not None:
                self.event(self.t, K.STEP_RESUMED, attempt=attempt, lost_attempt=previous)
                self.resumes += 1
            self.claim(attempt)
            self.t += ratchet_setting("LEASE_SECONDS") + self.rng.uniform(0, 5)
            lost += 1
            self.end_attempt(attempt, "lost")
            self.event(self.t, K.STEP_LOST, attempt=attempt, worker=attempt.row["worker"])
            if lost > limit:
                error = engine_error("Lost", f"the step's worker was lost {lost} times; giving up")
                attempt.row.update(error=error, failure_mode="lost_progress")
                self.event(self.t, K.STEP_FAILED, attempt=attempt, error=error, failure_mode="lost_progress")
                self.fail(error, "lost_progress", state.name, attempt)
                return "failed"
            number, previous = number + 1, attempt

    def failure_for(self, state: State, mode: str, *, transient: bool) -> tuple[dict[str, Any], str]:
        """The error and attempt status of a failed try in ``mode``."""
        if mode == "timeout":
            return engine_error("Timeout", "the step ran past its timeout"), "timed_out"
        if mode == "context_loss":
            return {"type": "ContractViolation", "types": ["ContractViolation", "RatchetError"], "code": "R450",
                    "message": f"output of '{state.name}': at $: 'result' is a required property"}, "failed"
        if mode == "throttling":
            return {"type": "Throttled", "types": ["Throttled"], "code": "",
                    "message": f"tool '{state.handler}' refused: rate limit of {self.rng.choice((5, 10))}/s "
                               "reached"}, "failed"
        if mode == "duplicate_side_effect":
            return engine_error("EffectCompensated", f"operator chose to compensate uncertain effect "
                                                     f"'{state.name}'"), "failed"
        if transient and state.retry and state.retry[0].errors[0] != "*":
            kind, text = state.retry[0].errors[0], "temporary failure, try {n} of {n}"
        else:  # a few causes per state, so the failure dashboard has clusters to group
            kind, text = HANDLER_ERRORS[(zlib.crc32(state.name.encode()) + self.rng.randrange(2)) % len(HANDLER_ERRORS)]
        message = text.format(hex=f"{self.rng.getrandbits(48):012x}", n=self.rng.randrange(1, 999),
                              word=self.rng.choice(WORDS))
        return {"type": kind, "types": [kind, "Exception"], "message": message, "code": "",
                "traceback": f'Traceback (most recent call last):\n  File "handlers.py", line 42\n{kind}: '
                             f"{message}\n"}, "failed"

    def record_effect(self, state: State, seq: int, path: str, attempt: _Attempt, spec: tuple[str, str]) -> dict:
        key, compensate = spec
        scope = f"{state.name}#{seq}" + (f"/{path}" if path else "")
        effect = {"key": key, "scope": scope, "state_name": state.name, "sequence": seq, "branch_path": path,
                  "queue": state.queue, "attempt": attempt, "compensate": compensate, "intent_at": self.t,
                  "confirmed_at": self.t + 0.02, "dedup_hits": 0, "status": "confirmed"}
        self.effects.append(effect)
        self.event(self.t, K.EFFECT_INTENT, attempt=attempt, key=key)
        self.t += 0.02
        self.event(self.t, K.EFFECT_CONFIRMED, attempt=attempt, key=key)
        return effect

    # the run ---------------------------------------------------------------------------------

    def fail(self, error: dict[str, Any], mode: str, state_name: str, cause: _Attempt | None) -> None:
        """``runstate.fail_run``: compensate the confirmed effects that have a compensation, then fail."""
        self.status, self.error, self.mode, self.failed = "failed", error, mode, cause
        self.failure_state = state_name or (cause.row["state_name"] if cause else "")
        undo = [e for e in self.effects if e["compensate"]]
        if undo:
            self.event(self.t, K.COMPENSATION_STARTED, state_name, failure_mode=mode)
        for effect in reversed(undo):
            state = self.defn.states[effect["state_name"]]
            self.t += 0.01
            attempt = self.new_attempt(state, effect["sequence"], effect["branch_path"], 1, kind="compensation",
                                       effect=effect)
            self.claim(attempt)
            self.run_for(state)
            self.end_attempt(attempt, "succeeded")
            self.event(self.t, K.STEP_SUCCEEDED, attempt=attempt, duration_ms=0)
            effect.update(status="compensated", compensated_at=self.t)
            self.event(self.t, K.COMPENSATION_DONE, effect["state_name"], key=effect["key"])
        self.event(self.t, K.RUN_FAILED, state_name, failure_mode=mode, error=error)

    def walk(self, name: str, path: str, stops: list[str]) -> str:
        """Enter states from ``name`` until the line ends; ``stops`` holds the stop still to make."""
        while True:
            state = self.defn.states[name]
            self.steps += 1
            seq = self.steps
            self.t += 0.004
            if state.type == "choice":
                targets = [c.next for c in state.choices] + ([state.default] if state.default else [])
                rejected = [t for t in targets if self.defn.states[t].type == "fail"]
                fine = [t for t in targets if t not in rejected]
                name = rejected[0] if rejected and stops and self.failure == "rejected" else self.rng.choice(fine)
                self.event(self.t, K.CHOICE_TAKEN, state.name, next=name)
                continue
            if state.type == "handoff":
                self.depth += 1
                self.event(self.t, K.HANDED_OFF, state.name, to=state.to, depth=self.depth)
                name = state.to or ""
                continue
            if state.type == "succeed":
                return "done"
            if state.type == "fail":
                error = engine_error(state.error or "Failed", state.cause or f"the run reached fail state '{name}'")
                self.fail(error, "rejected", name, None)
                return "failed"
            if state.type in ("parallel", "map"):
                outcome = self.fork(state, seq, path)
                if outcome != "done":
                    return outcome
                nxt: str | None = state.next
            else:
                last = not path and not state.routes and (
                    state.end or not state.next or self.defn.states[state.next].type == "succeed")
                stop = stops[0] if stops and (last or self.rng.random() < 0.3) else ""
                if stop == "fail" and self.failure == "rejected":
                    stop = ""  # a choice leads to the fail state instead
                if stop == "fail" and self.failure == "cost_explosion":
                    budget = self.defn.budgets.max_steps or 30
                    self.event(self.t, K.BUDGET_EXCEEDED, name, budget="max_steps", limit=budget)
                    self.fail(engine_error("BudgetExceeded", f"step budget of {budget} used up before '{name}'"),
                              "cost_explosion", "", None)
                    return "failed"
                outcome = self.visit(state, seq, path, stop)
                if outcome in ("failed", "stopped"):
                    return outcome
                if outcome == "caught":
                    nxt = state.catch[0].next
                elif state.routes:
                    nxt = self.rng.choice(state.routes)
                    self.event(self.t, K.ROUTE_TAKEN, state.name, next=nxt)
                else:
                    nxt = state.next
            if not nxt or state.end:
                return "done"
            name = nxt

    def fork(self, state: State, seq: int, path: str) -> str:
        """Branches run side by side from the fork's moment; the join waits for the slowest."""
        fork_path = f"{path}/{state.name}#{seq}" if path else f"{state.name}#{seq}"
        self.event(self.t, K.BRANCHES_STARTED, state.name, fork=fork_path, branches=[b.name for b in state.branches])
        start, ends = self.t, []
        for branch in state.branches:
            self.t = start
            self.walk(branch.start_at, f"{fork_path}/{branch.name}", [])
            ends.append(self.t)
            self.event(self.t, K.BRANCH_FINISHED, state.name, branch=f"{fork_path}/{branch.name}",
                       outcome="succeeded")
        self.t = max(ends, default=start) + 0.01
        self.event(self.t, K.JOINED, state.name, fork=fork_path, branches=[b.name for b in state.branches])
        return "done"

    def build(self) -> None:
        self.event(0.0, K.RUN_STARTED, version=self.plan.version_number, idempotency_key="")
        stops = {"failed": ["fail"], "cancelled": ["cancel"], "running": ["run"]}.get(self.outcome, [])
        outcome = self.walk(self.defn.start_at, "", stops)
        if outcome == "stopped" and self.outcome == "cancelled":
            self.status, self.mode = "cancelled", "cancelled"
            self.error = engine_error("Cancelled", "cancelled by an operator")
            self.event(self.t, K.RUN_CANCELLED, reason="cancelled by an operator")
        elif outcome == "stopped":
            self.status = "running"
        elif outcome == "done":
            self.status = "succeeded"
            self.event(self.t, K.RUN_SUCCEEDED)


def finish(builder: RunBuilder, run_id: uuid.UUID, created: datetime, ids: Ids, now: datetime) -> Built:
    """Rows of a built run: ids assigned, relative times turned into moments from ``created``."""
    b, plan = builder, builder.plan
    base = created.timestamp()

    def at(seconds: float | None) -> datetime | None:
        return None if seconds is None else datetime.fromtimestamp(base + seconds, UTC)

    order = sorted(range(len(b.attempts)), key=lambda i: b.attempts[i].row["scheduled_at"])
    attempt_ids = {id(b.attempts[i]): ids.attempt + n for n, i in enumerate(order)}
    ids.attempt += len(order)
    effect_ids = {id(e): ids.effect + n for n, e in enumerate(b.effects)}
    ids.effect += len(b.effects)
    tokens, cost = 0, Decimal(0)
    attempts = []
    for i in order:
        r = b.attempts[i].row
        tokens, cost = tokens + r["tokens"], cost + r["cost"]
        running = r.get("status") == "running"
        day = int((base + r.get("claimed_at", 0)) // 86400)
        slot = r.get("worker")
        worker = "" if slot is None else f"{HOSTS[slot]}.{1000 + (day * 7919 + slot * 131) % 60000}"
        attempts.append((
            attempt_ids[id(b.attempts[i])], run_id, r["kind"], r["state_name"], r["branch_path"], r["sequence"],
            r["attempt"], r.get("status", "scheduled"), r["queue"], None, r.get("output"), r.get("error"),
            r.get("failure_mode", ""), attempt_ids[id(r["resumed_from"])] if r["resumed_from"] else None,
            effect_ids[id(r["effect"])] if r["effect"] else None, None, at(r["not_before"]), at(r["dispatched_at"]),
            r["dispatch_count"], None, r.get("claim_token"), worker, now + timedelta(minutes=10) if running else None,
            now - timedelta(seconds=1) if running else None, None, None, at(r["scheduled_at"]), at(r.get("claimed_at")),
            at(r.get("finished_at")), r["tokens"], r["cost"]))
    events = []
    for n, (t, kind, state, data, attempt) in enumerate(sorted(b.run_events, key=lambda e: e[0])):
        if "lost_attempt" in data:
            data = {**data, "lost_attempt": attempt_ids[id(data["lost_attempt"])]}
        events.append((ids.event + n, run_id, attempt_ids[id(attempt)] if attempt else None, kind, state, data,
                       None, at(t)))
    ids.event += len(events)
    effects = [(
        effect_ids[id(e)], run_id, attempt_ids[id(e["attempt"])], e["key"], e["scope"], e["state_name"], e["sequence"],
        e["branch_path"], e["queue"], e["status"], not e["compensate"], {"delivered": True}, None, e["compensate"],
        1, [attempt_ids[id(e["attempt"])]], 0, 0, e["dedup_hits"], at(e["intent_at"]), at(e["confirmed_at"]),
        at(e.get("compensated_at")), None, "") for e in b.effects]
    terminal = b.status in ("succeeded", "failed", "cancelled")
    run = (
        run_id, plan.workflow_id, plan.version_id, b.status, plan.sample_input, {"input": plan.sample_input},
        {"ok": True} if b.status == "succeeded" else None, b.error, b.mode,
        attempt_ids[id(b.failed)] if b.failed else None, "", b.failure_state,
        fingerprint(b.error, b.failure_state) if b.status == "failed" else "", None, None, created,
        at(b.t) if terminal else None, None, b.steps, tokens, b.depth, cost, b.resumes, 0, 0.0, None, None, {})
    return Built(run, attempts, events, effects, b.status)
