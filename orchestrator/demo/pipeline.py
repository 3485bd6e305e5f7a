"""The pipeline demo: ingest a document, extract its facts, summarise it, publish the summary.

Offline and deterministic: the "model" steps are plain text rules that report token usage the
way a model call would, so the run's cost and budgets show up as they would with a real one.
"""

from __future__ import annotations

import re
from typing import Any

from ..sdk import StepContext, handler
from .handlers import slow_delivery
from .research import CORPUS_DIR, corpus

FACT = re.compile(r"\b(\d+(?:\s+to\s+\d+)?\s+(?:business\s+)?days?|\d+\s*%|[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*)\b")
SOURCES = tuple(sorted(path.stem for path in CORPUS_DIR.glob("*.json")))


@handler("demo.ingest")
def ingest(ctx: StepContext) -> dict[str, Any]:
    """Take the document from the input (``text``), or from the shipped set by ``doc_id``."""
    text, doc_id = ctx.input.get("text"), ctx.input.get("doc_id")
    if not text and doc_id:
        found = [doc for source in SOURCES for doc in corpus(source) if doc["id"] == doc_id]
        if not found:
            raise ValueError(f"no document {doc_id!r} in the demo set")
        text = f"{found[0]['title']}. {found[0]['text']}"
    if not text:
        raise ValueError("the input needs 'text' or a 'doc_id' of the demo set")
    return {"id": doc_id or "inline", "text": text, "words": len(text.split())}


@handler("demo.extract")
def extract(ctx: StepContext) -> dict[str, Any]:
    """Durations, percentages and names the document mentions, in order, without repeats."""
    text = ctx.context["ingest"]["text"]
    facts = list(dict.fromkeys(match.group(1) for match in FACT.finditer(text)))
    ctx.usage(tokens=len(text.split()) * 2, cost=0.0001)
    return {"facts": facts}


@handler("demo.summarise")
def summarise(ctx: StepContext) -> dict[str, Any]:
    """The first sentence, and the facts that are not already in it."""
    text = ctx.context["ingest"]["text"]
    first = re.split(r"(?<=[.!?])\s+", text.strip())[0]
    extra = [fact for fact in ctx.context["extract"]["facts"] if fact not in first]
    summary = first + (f" (also: {', '.join(extra[:4])})" if extra else "")
    ctx.usage(tokens=len(text.split()) * 3 + len(summary.split()), cost=0.0004)
    return {"summary": summary}


@handler("demo.publish_summary")
def publish_summary(ctx: StepContext) -> dict[str, Any]:
    """Post the summary to the (simulated) knowledge base, which honours the idempotency key."""
    summary = ctx.context["summarise"]["summary"]
    receipt = ctx.effect("publish", lambda key: slow_delivery(ctx, "summary", {"summary": summary},
                                                              idempotency_key=key)(key), idempotent=True)
    return {"summary": summary, "delivery": receipt["delivery"]}
