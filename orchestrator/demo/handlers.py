"""Handlers of the demo workflows. They run offline and do real side effects on the sink."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from ..sdk import NOT_FOUND, StepContext, handler
from . import sink


class TransientInventoryError(Exception):
    """The inventory service hiccupped; retrying helps."""


class InvalidOrder(ValueError):
    pass


def _order_digest(order_id: str) -> int:
    return int(hashlib.sha256(order_id.encode()).hexdigest()[:8], 16)


@handler("demo.validate_order")
def validate_order(ctx: StepContext) -> dict[str, Any]:
    order = ctx.input or {}
    items = order.get("items") or []
    if not order.get("order_id"):
        raise InvalidOrder("the order has no order_id")
    problems = [f"item {i} needs a sku, a positive qty and a price" for i, item in enumerate(items)
                if not item.get("sku") or int(item.get("qty", 0)) <= 0 or float(item.get("price", -1)) < 0]
    total = round(sum(int(i.get("qty", 0)) * float(i.get("price", 0)) for i in items), 2)
    return {"valid": bool(items) and not problems, "problems": problems or (["no items"] if not items else []),
            "total": total, "item_count": len(items)}


@handler("demo.reserve_inventory")
def reserve_inventory(ctx: StepContext) -> dict[str, Any]:
    """Flaky on purpose: fails the first 0 to ``args.max_failures`` tries of an order."""
    order_id = ctx.input["order_id"]
    failures = _order_digest(order_id) % (int(ctx.args.get("max_failures", 2)) + 1)
    if ctx.attempt_number <= failures:
        raise TransientInventoryError(f"inventory service busy (try {ctx.attempt_number} of order {order_id})")
    return {"reserved": [item["sku"] for item in ctx.input["items"]], "tries": ctx.attempt_number}


@handler("demo.fraud_check")
def fraud_check(ctx: StepContext) -> dict[str, Any]:
    total = ctx.context["validate"]["total"]
    ctx.usage(tokens=350, cost=0.0007)
    return {"score": round(min(total / 10000, 0.99), 3), "model": "offline-rules"}


def refund_payment(result: dict[str, Any], idempotency_key: str) -> None:
    sink.deliver(f"{idempotency_key}-refund", "refund", result, idempotency_key=f"{idempotency_key}-refund")


def slow_delivery(ctx: StepContext, kind: str, payload: dict[str, Any], **options: Any) -> Any:
    """Deliver at the sink the way a remote API answers: the request takes a while to arrive
    and its answer a while to come back (``input.effect_seconds``, 0 by default), so a crash
    can land before the delivery or after it, the two cases an effects ledger must tell apart."""
    latency = float(ctx.input.get("effect_seconds", 0)) / 2

    def call(key: str) -> Any:
        time.sleep(latency)
        receipt = sink.deliver(key, kind, payload, **options)
        time.sleep(latency)
        return receipt

    return call


def find_delivery(idempotency_key: str) -> Any:
    """The ``check`` of an effect: ask the sink whether it has the key (as payment APIs allow)."""
    return sink.lookup(idempotency_key) or NOT_FOUND


@handler("demo.charge_payment")
def charge_payment(ctx: StepContext) -> dict[str, Any]:
    """Not idempotent downstream, but the payment API can be asked: an unknown outcome is
    resolved by ``check``, without an operator."""
    amount = ctx.context["validate"]["total"]
    receipt = ctx.effect(
        "charge",
        slow_delivery(ctx, "charge", {"amount": amount}),
        compensate=refund_payment,
        check=find_delivery,
    )
    return {"charged": amount, "delivery": receipt["delivery"]}


@handler("demo.pack_order")
def pack_order(ctx: StepContext) -> dict[str, Any]:
    """The slow step: works in slices and heartbeats after each one."""
    seconds = float(ctx.input.get("pack_seconds", ctx.args.get("seconds", 1.0)))
    slices = max(int(seconds / 0.1), 1)
    for done in range(1, slices + 1):
        time.sleep(seconds / slices)
        ctx.heartbeat({"packed": done, "of": slices})
    return {"parcels": max(1, len(ctx.input["items"]) // 3), "seconds": seconds}


@handler("demo.ship_order")
def ship_order(ctx: StepContext) -> dict[str, Any]:
    """The carrier honours the idempotency key: a retry after a crash is safe."""
    parcels = ctx.context["pack"]["parcels"]
    label = ctx.effect(
        "shipment",
        lambda key: slow_delivery(ctx, "shipment", {"parcels": parcels}, idempotency_key=key)(key),
        idempotent=True,
    )
    return {"tracking": f"TRK{label['delivery']:08d}"}


@handler("demo.notify_customer")
def notify_customer(ctx: StepContext) -> dict[str, Any]:
    """The mail relay neither honours keys nor answers lookups: after a crash inside it, the
    run pauses until an operator says whether the e-mail went out."""
    tracking = ctx.context.get("ship", {}).get("tracking")
    ctx.effect(
        "email",
        slow_delivery(ctx, "email", {"to": ctx.input.get("customer"), "tracking": tracking}),
    )
    return {"notified": ctx.input.get("customer")}


@handler("demo.noop")
def noop(ctx: StepContext) -> dict[str, Any]:
    return {"ok": True}


@handler("demo.sleep")
def sleep(ctx: StepContext) -> dict[str, Any]:
    time.sleep(float(ctx.args.get("seconds", 1)))
    return {"slept": ctx.args.get("seconds", 1)}


@handler("demo.always_fails")
def always_fails(ctx: StepContext) -> None:
    raise RuntimeError(ctx.args.get("message", "this step always fails"))


@handler("demo.send_reminder")
def send_reminder(ctx: StepContext) -> dict[str, Any]:
    result = ctx.effect(
        "reminder",
        lambda key: sink.deliver(key, "reminder", {"to": ctx.input.get("customer")}, idempotency_key=key),
        idempotent=True,
    )
    return {"delivery": result["delivery"]}


@handler("demo.partner_api")
def partner_api(ctx: StepContext) -> dict[str, Any]:
    """A read from a partner's API that allows only so many calls a second (its rate limit) and
    is sometimes down (``partner_down`` in the input: its circuit breaker). Each call that gets
    through is recorded at the sink (kind ``partner_api``), so the rate it saw can be measured."""
    if ctx.input.get("partner_down"):
        raise ConnectionError("the partner API is not answering (partner_down in the run's input)")
    sink.deliver(f"partner-{ctx.run_id}-{ctx.state_name}-{ctx.attempt_number}", "partner_api",
                 {"run": str(ctx.run_id)})
    return {"partner": "ok"}
