"""Stored XSS, checked on the server: a payload in every user-editable field comes back escaped
in every HTML page that shows it, in the Graphviz SVG (inline and exported), and as a plain
string in JSON. Names the payload cannot be (workflow, state and branch names) are refused
where they are typed. Chromium checks the same pages: tests/browser/test_xss.py."""

from __future__ import annotations

import json
from html import escape
from html.parser import HTMLParser

import pytest
from django.test import Client

from designer.drafts import create_draft
from designer.source import SourceError
from orchestrator.engine.errors import DefinitionError
from orchestrator.engine.workflows import publish
from orchestrator.models import Effect, RunStatus

from .xss_data import DRAFT, MARKUP, PAYLOAD, WORKFLOW, build, definition, pages

pytestmark = pytest.mark.django_db(transaction=True)

ESCAPED = "onerror=alert(1)&gt;"  # the payload shown as text, whichever escaping was used for the quotes


@pytest.fixture
def probe(redis_conn, sink_path, fast_engine, django_user_model):
    ops = django_user_model.objects.create_superuser("ops", password="pw", email="")
    reviewer = django_user_model.objects.create_user("rita", password="pw")
    return build(ops, reviewer)


@pytest.fixture
def ops(probe, django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.get(username="ops"))
    return client


def raw_markup(text: str) -> list[str]:
    return [markup for markup in MARKUP if markup in text]


class _Elements(HTMLParser):
    """Elements and attributes that only the payload could have made, as a browser parses them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        handlers = [name for name in names if name.startswith("on")]
        if handlers:
            self.found.append(f"<{tag}> with {handlers}")
        if tag == "img" and names.get("src") == "x":
            self.found.append("<img src=x>")
        if tag == "script" and not names.get("src") and names.get("type") != "application/json":
            self.found.append("an inline <script>")
        if any((value or "").strip().lower().startswith("javascript:") for value in names.values()):
            self.found.append(f"<{tag}> with a javascript: URL")


def injected_elements(text: str) -> list[str]:
    parser = _Elements()
    parser.feed(text)
    parser.close()
    return parser.found


def test_the_probe_holds_the_payload_in_every_field(probe):
    """The data the other tests look at really carries the payload where it says."""
    finished = probe.finished
    assert finished.status == RunStatus.FAILED and finished.input["note"] == PAYLOAD
    assert Effect.objects.get(run=finished).key == f"key-{PAYLOAD}"
    assert finished.approvals.get().comment == PAYLOAD
    assert PAYLOAD in [(a.error or {}).get("message") for a in finished.attempts.all()]


def test_every_page_showing_the_payload_escapes_it(ops, probe):
    shown = set()
    for url in pages(probe):
        response = ops.get(url)
        assert response.status_code == 200, url
        text = response.content.decode()
        assert not raw_markup(text), f"{url} shows raw markup {raw_markup(text)}"
        assert not injected_elements(text), f"{url}: {injected_elements(text)}"
        if ESCAPED in text:
            shown.add(url)
    # The payload is really on the pages that show these fields (escaped), not silently dropped.
    for url in (f"/runs/{probe.finished.pk}/", f"/runs/{probe.waiting.pk}/", f"/workflows/{WORKFLOW}/",
                f"/designer/{WORKFLOW}/", f"/designer/{DRAFT}/", f"/designer/{DRAFT}/?state=first"):
        assert url in shown, f"{url} does not show the payload at all"


def test_the_approvals_inbox_escapes_the_payload(probe, django_user_model):
    """The inbox of the reviewer (four-eyes keeps the starter's own request out of theirs)."""
    reviewer = Client()
    reviewer.force_login(django_user_model.objects.get(username="rita"))
    text = reviewer.get("/approvals/").content.decode()
    assert ESCAPED in text and f'id="approval-{probe.approval.pk}"' in text
    assert not raw_markup(text) and not injected_elements(text)


def test_the_htmx_fragments_escape_the_payload(ops, probe):
    htmx = {"HTTP_HX_REQUEST": "true"}
    for url in (f"/runs/{probe.finished.pk}/?fragment=live", "/runs/?fragment=rows", f"/designer/{DRAFT}/?state=first",
                "/approvals/badge"):
        response = ops.get(url, **htmx)
        assert response.status_code in (200, 286), url  # 286: a finished run's poll stops
        assert not raw_markup(response.content.decode()), url


def test_the_graph_svg_escapes_the_payload_inline_and_exported(ops, probe):
    for url in (f"/runs/{probe.finished.pk}/", f"/workflows/{WORKFLOW}/", f"/designer/{DRAFT}/"):
        text = ops.get(url).content.decode()
        svg = text[text.index("<svg"):text.rindex("</svg>")]
        assert "workflow-graph" in svg and not raw_markup(svg) and not injected_elements(svg), url
    for name in (WORKFLOW, DRAFT):
        exported = ops.get(f"/designer/{name}/export.svg")
        if exported.status_code == 400:  # a draft too broken to draw answers in plain text
            assert exported["Content-Type"].startswith("text/plain")
            continue
        assert exported.status_code == 200 and exported["Content-Type"] == "image/svg+xml"
        svg = exported.content.decode()
        assert not raw_markup(svg) and not injected_elements(svg), name
        assert ESCAPED in svg, name


def test_the_api_returns_the_payload_as_json_strings_never_as_markup(ops, probe):
    response = ops.get(f"/api/runs/{probe.finished.pk}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Content-Type-Options"] == "nosniff"
    body = response.json()
    assert body["input"]["note"] == PAYLOAD and body["input"][PAYLOAD] == [PAYLOAD]
    assert [effect["key"] for effect in body["effects"]] == [f"key-{PAYLOAD}"]
    decided = [event["data"] for event in body["events"] if event["kind"] == "approval_decided"]
    assert [data["comment"] for data in decided] == [PAYLOAD]


@pytest.mark.parametrize("where", ["workflow name", "state name", "branch name", "next state"])
def test_a_name_holding_markup_is_refused_when_published(where, db):
    doc = definition("xss_names")
    if where == "workflow name":
        doc["name"] = PAYLOAD
    elif where == "state name":
        doc["states"][PAYLOAD] = {"type": "succeed"}
    elif where == "branch name":
        doc["states"]["fan"] = {"type": "parallel", "branches": {PAYLOAD: {
            "start_at": "a", "states": {"a": {"type": "succeed"}}}}, "next": "route"}
    else:
        doc["states"]["route"]["default"] = PAYLOAD
    with pytest.raises(DefinitionError):
        publish(doc)


def test_a_draft_with_markup_in_a_state_name_is_refused_and_the_refusal_is_escaped(ops, probe):
    doc = {"name": "xss_named", "start_at": "a", "states": {"a": {"type": "succeed"}, PAYLOAD: {"type": "succeed"}}}
    with pytest.raises(SourceError, match="does not match"):
        create_draft("xss_named", json.dumps(doc), "json")
    response = ops.post(f"/designer/{DRAFT}/source/", {"source": json.dumps({**doc, "name": DRAFT}), "format": "json",
                                                        "revision": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code in (200, 400, 409)
    assert not raw_markup(response.content.decode())


def test_the_checks_find_the_payload_when_a_page_shows_it_unescaped():
    """What the tests above look for is what an unescaped payload makes."""
    page = f"<html><body><p title='{PAYLOAD}'>{PAYLOAD}</p><a href='javascript:alert(1)'>x</a></body></html>"
    assert raw_markup(page)
    found = injected_elements(page)
    assert "<img src=x>" in found and "an inline <script>" in found and "<svg> with ['onload']" in found
    assert "<a> with a javascript: URL" in found
    escaped = injected_elements(f"<p title='{escape(PAYLOAD)}'>{escape(PAYLOAD)}</p>")
    assert escaped == []
