"""The approval demos: a refund that a second person approves above a threshold (its reversal
and customer e-mail are effects with compensations, so a failing last step shows the saga),
and an agent's drafted reply that a person edits before it is sent.

Deliveries go to the demo sink under each effect's idempotency key (a payment or mail API
that honours it), as slowly as the run's ``input.effect_seconds`` says, so chaos can land
mid-call.
"""

from __future__ import annotations

from typing import Any

from ..sdk import ModelAnswer, ModelRequest, StepContext, handler, offline_model
from . import sink
from .agents import asked, final
from .handlers import slow_delivery


def _deliver(ctx: StepContext, kind: str, payload: dict[str, Any]) -> Any:
    return lambda key: slow_delivery(ctx, kind, payload, idempotency_key=key)(key)


@handler("demo.refund_check")
def refund_check(ctx: StepContext) -> dict[str, Any]:
    """The refund as finance sees it: how much, to whom, and whether it needs a second person."""
    refund = ctx.input or {}
    amount = round(float(refund.get("amount", 0)), 2)
    if amount <= 0:
        raise ValueError(f"a refund needs a positive amount, not {refund.get('amount')!r}")
    threshold = float(ctx.args.get("threshold", 100))
    return {"order_id": refund.get("order_id", "?"), "customer": refund.get("customer", ""), "amount": amount,
            "needs_approval": amount > threshold, "threshold": threshold}


def _charge_again(result: dict[str, Any], idempotency_key: str) -> None:
    sink.deliver(f"{idempotency_key}-undo", "refund_reversed", result, idempotency_key=f"{idempotency_key}-undo")


def _send_correction(result: dict[str, Any], idempotency_key: str) -> None:
    sink.deliver(f"{idempotency_key}-undo", "email_correction", result, idempotency_key=f"{idempotency_key}-undo")


@handler("demo.reverse_charge")
def reverse_charge(ctx: StepContext) -> dict[str, Any]:
    """Pay the money back (compensation: charge it again, should the run fail later)."""
    check = ctx.context["check"]
    receipt = ctx.effect("reversal", _deliver(ctx, "reversal", {"order": check["order_id"], "amount": check["amount"]}),
                         compensate=_charge_again, idempotent=True)
    return {"reversed": check["amount"], "delivery": receipt["delivery"]}


@handler("demo.email_customer")
def email_customer(ctx: StepContext) -> dict[str, Any]:
    """Tell the customer (compensation: a correction e-mail)."""
    check = ctx.context["check"]
    receipt = ctx.effect("refund_email", _deliver(ctx, "email", {"to": check["customer"], "amount": check["amount"]}),
                         compensate=_send_correction, idempotent=True)
    return {"emailed": check["customer"], "delivery": receipt["delivery"]}


@handler("demo.close_ticket")
def close_ticket(ctx: StepContext) -> dict[str, Any]:
    """Close the support ticket; ``fail_at: close_ticket`` in the input makes it fail, so the
    run fails and its saga undoes the e-mail, then the reversal."""
    if (ctx.input or {}).get("fail_at") == "close_ticket":
        raise RuntimeError("the ticket system refused to close the ticket (fail_at: close_ticket in the input)")
    return {"closed": ctx.context["check"]["order_id"]}


@offline_model("demo.reply_drafter")
def reply_drafter(request: ModelRequest) -> ModelAnswer:
    """Drafts a reply to a customer's message, for a person to read and correct."""
    message = asked(request)
    name = message.get("customer_name") or "there"
    question = str(message.get("message", "")).strip()
    body = (f"Hello {name},\n\nThank you for your message about \"{question[:120]}\". We have looked into it "
            "and will sort it out within two working days.\n\nKind regards,\nThe support team")
    return final(request, subject=f"Re: {question[:60]}", body=body)


@handler("demo.send_reviewed_reply")
def send_reviewed_reply(ctx: StepContext) -> dict[str, Any]:
    """Send the reply as the reviewer left it (the mail relay honours the idempotency key)."""
    draft = ctx.context["draft"]["data"]
    to = (ctx.context.get("input") or {}).get("customer", "")
    receipt = ctx.effect("reply", _deliver(ctx, "reply", {"to": to, "subject": draft["subject"],
                                                         "body": draft["body"]}), idempotent=True)
    return {"sent_to": to, "body": draft["body"], "delivery": receipt["delivery"]}
