"""The agent demos' offline models and tools: a single agent answering "where is my order?"
with tools in a loop, and a support network where a triage agent hands off to billing or
technical support.

The models are deterministic Python (the offline provider): they read the conversation the
engine sends, ask for tools and pick routes the way a real model would through the same
protocol, so the same workflows run against an OpenAI-compatible server by changing the
states' provider. The data (orders, invoices, help articles) ships in ``data/support.json``.
"""

from __future__ import annotations

import json
import re
import time
from functools import cache
from pathlib import Path
from typing import Any

from ..sdk import ModelAnswer, ModelRequest, StepContext, handler, offline_model, tool
from ..sdk import answer as reply_with
from . import sink

DATA = Path(__file__).parent / "data" / "support.json"
BILLING_WORDS = frozenset("charge charged charges twice refund invoice bill billing payment paid plan".split())
TECHNICAL_WORDS = frozenset("crash crashes closes error bug login log sign password sync slow stuck app".split())


@cache
def data() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def asked(request: ModelRequest) -> dict[str, Any]:
    """The input the agent was given (the first user message)."""
    user = next(m["content"] for m in request.messages if m["role"] == "user")
    try:
        value = json.loads(user)
    except ValueError:
        return {"question": user}
    return value if isinstance(value, dict) else {"question": str(value)}


def tool_results(request: ModelRequest) -> list[Any]:
    return [json.loads(m["content"]) for m in request.messages if m["role"] == "tool"]


def final(request: ModelRequest, route: str | None = None, **content: Any) -> ModelAnswer:
    calls = [("choose_next_state", {"next": route})] if route else []
    return reply_with(request, content=json.dumps(content, sort_keys=True), tool_calls=calls)


# --- single agent: where is my order? --------------------------------------------------------


@tool("demo.lookup_order", parameters={"type": "object", "required": ["order_id"],
                                       "properties": {"order_id": {"type": "string"}}})
def lookup_order(ctx: StepContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Look an order up by its id: items, total and tracking number."""
    order = data()["orders"].get(arguments["order_id"])
    return {"found": False} if order is None else {"found": True, **order}


@tool("demo.track_shipment", parameters={"type": "object", "required": ["tracking"],
                                         "properties": {"tracking": {"type": "string"}}})
def track_shipment(ctx: StepContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Where a parcel is, by tracking number."""
    return data()["shipments"].get(arguments["tracking"], {"status": "unknown to the carrier"})


@offline_model("demo.order_assistant")
def order_assistant(request: ModelRequest) -> ModelAnswer:
    """Looks the order up, then tracks its parcel if it has one, then answers."""
    question, results = asked(request), tool_results(request)
    order_id = str(question.get("order_id", ""))
    if not results:
        return reply_with(request, tool_calls=[("demo.lookup_order", {"order_id": order_id})])
    order = results[0]
    if not order.get("found"):
        return final(request, status="not_found", answer=f"I could not find an order {order_id}; "
                     "please check the number on your confirmation email.")
    items = ", ".join(order["items"])
    if order.get("tracking") and len(results) == 1:
        return reply_with(request, tool_calls=[("demo.track_shipment", {"tracking": order["tracking"]})])
    if not order.get("tracking"):
        return final(request, status="preparing", answer=f"Your order {order_id} ({items}, {order['total']:.2f}) "
                     "is being prepared; you will get a tracking number when it ships.")
    parcel = results[1]
    return final(request, status=parcel.get("status", "unknown"),
                 answer=f"Your order {order_id} ({items}, {order['total']:.2f}) is with {parcel.get('carrier')}: "
                 f"{parcel.get('status')}, expected {parcel.get('eta')}.")


# --- peer network: triage, billing, technical support -------------------------------------------


@offline_model("demo.triage")
def triage(request: ModelRequest) -> ModelAnswer:
    """Billing words go to billing, technical words to technical support, anything else is
    answered here."""
    said = words(asked(request).get("question", ""))
    if said & BILLING_WORDS:
        return final(request, "to_billing", answer="Passing you to billing.", team="billing")
    if said & TECHNICAL_WORDS:
        return final(request, "to_technical", answer="Passing you to technical support.", team="technical")
    return final(request, "reply", answer="Thanks for writing! A person will read your message within a day.",
                 team="triage")


@tool("demo.find_invoices", parameters={"type": "object", "required": ["customer"],
                                        "properties": {"customer": {"type": "string"}}})
def find_invoices(ctx: StepContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """The customer's invoices, with how many times each was charged."""
    return data()["invoices"].get(arguments["customer"], [])


@tool("demo.issue_refund", parameters={"type": "object", "required": ["invoice", "amount"],
                                       "properties": {"invoice": {"type": "string"}, "amount": {"type": "number"}}})
def issue_refund(ctx: StepContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Refund an amount of an invoice (once: the payment service honours the idempotency key)."""
    invoice = arguments["invoice"]
    receipt = ctx.effect(f"refund-{invoice}", _delivery(ctx, "refund", arguments), idempotent=True, shared=True)
    return {"refunded": arguments["amount"], "invoice": invoice, "receipt": receipt["delivery"]}


def _delivery(ctx: StepContext, kind: str, payload: dict[str, Any]) -> Any:
    """Deliver at the demo sink under the effect's idempotency key (a payment or mail API that
    honours it), as slowly as the run's ``input.effect_seconds`` says (chaos lands mid-call)."""
    run_input = ctx.context.get("input")
    latency = float(run_input.get("effect_seconds", 0)) / 2 if isinstance(run_input, dict) else 0.0

    def call(key: str) -> Any:
        time.sleep(latency)
        receipt = sink.deliver(key, kind, payload, idempotency_key=key)
        time.sleep(latency)
        return receipt

    return call


@offline_model("demo.billing")
def billing(request: ModelRequest) -> ModelAnswer:
    """Finds the customer's invoices, refunds a double charge, then answers (handing a
    technical part of the question on to technical support)."""
    question, results = asked(request), tool_results(request)
    if not results:
        return reply_with(request, tool_calls=[("demo.find_invoices", {"customer": question["customer"]})])
    invoices = results[0]
    double = next((i for i in invoices if i["charges"] > 1), None)
    if double is not None and len(results) == 1:
        return reply_with(request, tool_calls=[("demo.issue_refund",
                                                {"invoice": double["id"], "amount": double["amount"]})])
    if double is not None:
        text = f"You were charged twice for {double['id']}; {double['amount']:.2f} is refunded (3 to 5 business days)."
    elif invoices:
        text = f"Your invoices look right: {', '.join(i['id'] for i in invoices)}, each charged once."
    else:
        text = "I found no invoice for your address; reply with the email you signed up with."
    technical = bool(words(question.get("question", "")) & TECHNICAL_WORDS)
    return final(request, "billing_to_technical" if technical else "reply", answer=text, team="billing")


@tool("demo.search_help", parameters={"type": "object", "required": ["query"],
                                      "properties": {"query": {"type": "string"}}})
def search_help(ctx: StepContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Help articles matching the words of a query, best first."""
    said = words(arguments["query"])
    scored = [(len(said & set(a["terms"])), a) for a in data()["articles"]]
    return [{"id": a["id"], "title": a["title"], "text": a["text"]}
            for score, a in sorted(scored, key=lambda pair: -pair[0]) if score]


@offline_model("demo.technical")
def technical(request: ModelRequest) -> ModelAnswer:
    """Searches the help articles and answers with the best one (citing it)."""
    question, results = asked(request), tool_results(request)
    if not results:
        return reply_with(request, tool_calls=[("demo.search_help", {"query": question.get("question", "")})])
    articles = results[0]
    text = (f"{articles[0]['text']} (see {articles[0]['id']}: {articles[0]['title']})" if articles
            else "I could not find a help article for this; an engineer will follow up.")
    if question.get("billing_note"):
        text = f"{question['billing_note']} {text}"
    return final(request, "reply", answer=text, team="technical")


@handler("demo.send_reply")
def send_reply(ctx: StepContext) -> dict[str, Any]:
    """Email the answer of the agent that routed here to the customer (once)."""
    answered = [v for v in ctx.context.values() if isinstance(v, dict) and v.get("route") == "reply"]
    text = answered[-1]["data"]["answer"] if answered else ctx.input.get("answer", "")
    customer = ctx.input.get("customer")
    delivery = ctx.effect("reply", _delivery(ctx, "email", {"to": customer, "text": text}), idempotent=True)
    return {"to": customer, "text": text, "delivery": delivery["delivery"]}
