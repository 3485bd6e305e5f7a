"""The supervisor/worker demo: research a customer question over a small document set that
ships with the demo (``corpus/``), offline and deterministic.

A supervisor plans the search terms; three workers, one per source, each retrieve (a paid
search call: an effect with a ``check``, since the search API can be asked about a request)
and draft a cited answer with a score; the reducer keeps the best-scored draft, preferring
the alphabetically first source on a tie; the answer is published (an effect that can
neither be checked nor deduplicated downstream: after a crash inside it, an operator decides).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from ..sdk import StepContext, handler
from .handlers import find_delivery, slow_delivery

CORPUS_DIR = Path(__file__).parent / "corpus"
STOPWORDS = frozenset("a an and are can do does for from how i in is it my of on or the to what when where which "
                      "why will with you your".split())


@cache
def corpus(source: str) -> tuple[dict[str, str], ...]:
    return tuple(json.loads((CORPUS_DIR / f"{source}.json").read_text(encoding="utf-8")))


def terms_of(text: str) -> list[str]:
    return sorted({w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in STOPWORDS})


def search(source: str, terms: list[str], limit: int = 2) -> list[dict[str, Any]]:
    """Documents of ``source`` ranked by how many of ``terms`` they contain (ties: document order)."""
    scored = []
    for doc in corpus(source):
        words = set(terms_of(f"{doc['title']} {doc['text']}"))
        hits = len(words & set(terms))
        if hits:
            scored.append({"id": doc["id"], "title": doc["title"], "text": doc["text"],
                           "score": round(hits / max(len(terms), 1), 3)})
    return sorted(scored, key=lambda d: -d["score"])[:limit]


@handler("demo.plan_research")
def plan_research(ctx: StepContext) -> dict[str, Any]:
    """The supervisor: turn the question into search terms for the workers."""
    question = str(ctx.input.get("question", "")).strip()
    if not question:
        raise ValueError("the research input needs a 'question'")
    return {"question": question, "terms": terms_of(question)}


@handler("demo.retrieve")
def retrieve(ctx: StepContext) -> dict[str, Any]:
    """A worker's retrieval over one source, billed per call by the (simulated) search API."""
    source = ctx.args["source"]
    plan = ctx.context["plan"]
    ctx.effect("search_call", slow_delivery(ctx, "search", {"source": source, "terms": plan["terms"]}),
               check=find_delivery)
    ctx.usage(tokens=120 * len(plan["terms"]), cost=0.0002)
    return {"source": source, "hits": search(source, plan["terms"])}


@handler("demo.draft_answer")
def draft_answer(ctx: StepContext) -> dict[str, Any]:
    """A worker's draft from its own retrieval, citing the documents it used."""
    found = ctx.context[ctx.args["retrieved"]]
    hits = found["hits"]
    if not hits:
        return {"source": found["source"], "answer": "", "citations": [], "score": 0}
    answer = " ".join(hit["text"] for hit in hits)
    ctx.usage(tokens=40 * len(answer.split()), cost=0.001)
    return {"source": found["source"], "answer": answer, "citations": [hit["id"] for hit in hits],
            "score": max(hit["score"] for hit in hits)}


@handler("demo.publish_answer")
def publish_answer(ctx: StepContext) -> dict[str, Any]:
    best = ctx.context["research"]
    if not best.get("answer"):
        raise ValueError("no source had anything on this question")
    cited = f"{best['answer']} [{', '.join(best['citations'])}]"
    ctx.effect("publish", slow_delivery(ctx, "answer", {"question": ctx.context["plan"]["question"],
                                                        "answer": cited}))
    return {"answer": cited, "source": best["source"], "citations": best["citations"]}
