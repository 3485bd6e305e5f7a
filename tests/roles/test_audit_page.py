"""The audit trail page: only for those who may read it (the admins), filtered by who, action,
run, workflow and dates, a page at a time, its table swapped alone by htmx; and the run page's
Audit panel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from orchestrator.engine.runs import cancel_run, start_run
from orchestrator.models import AuditAction, AuditEntry

from ..workflows import chain, task
from .test_refusals import reviewed_flow

pytestmark = pytest.mark.django_db

AUDIT = reverse("monitoring:audit")
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "audit-main"}


def entry(action: str = AuditAction.START, who: str = "otto", at: datetime | None = None, **fields) -> AuditEntry:
    return AuditEntry.objects.create(action=action, actor_name=who, at=at or datetime.now(UTC), **fields)


def shown(response) -> list[int]:
    """The ids of the entries a page shows, in order."""
    text = response.content.decode()
    return [int(part.split('"')[0]) for part in text.split('<tr id="audit-')[1:]]


@pytest.fixture
def admin(signed_in):
    return signed_in("root", "admin")


def test_only_those_who_may_read_the_trail_see_the_page_and_its_link(signed_in, admin):
    for role in ("viewer", "approver", "operator", "designer"):
        client = signed_in(f"someone-{role}", role)
        assert client.get(AUDIT).status_code == 403, role
        assert f'href="{AUDIT}"' not in client.get(reverse("api_tokens")).content.decode()
    page = admin.get(AUDIT)
    assert page.status_code == 200 and "Audit trail" in page.content.decode()
    assert f'href="{AUDIT}"' in admin.get(reverse("api_tokens")).content.decode()


def test_the_trail_is_newest_first_and_empty_says_what_fills_it(admin):
    assert "Nothing audited yet" in admin.get(AUDIT).content.decode()
    first, second = entry(who="ann"), entry(who="bob")
    assert shown(admin.get(AUDIT)) == [second.pk, first.pk]


def test_filters_by_who_and_action(admin):
    ann_start, _, ann_cancel = entry(who="ann"), entry(who="bob"), entry(AuditAction.CANCEL, who="Ann")
    assert shown(admin.get(AUDIT, {"actor": "ann"})) == [ann_cancel.pk, ann_start.pk]  # any case
    assert shown(admin.get(AUDIT, {"actor": "ann", "action": "cancel"})) == [ann_cancel.pk]
    assert "No entry matches these filters" in admin.get(AUDIT, {"actor": "carl"}).content.decode()


def test_filters_by_run_and_workflow(admin, person):
    chain("other", ("a", task("demo.noop")))
    otto = person("otto", "operator")
    run = start_run(reviewed_flow(), user=otto)[0]
    cancel_run(run.pk, otto)
    start_run("other", user=otto)
    entries = {(e.action, e.workflow_name): e.pk for e in AuditEntry.objects.all()}
    ours = [entries[("cancel", "reviewed")], entries[("start", "reviewed")]]
    assert shown(admin.get(AUDIT, {"run": str(run.pk)})) == ours
    assert shown(admin.get(AUDIT, {"workflow": "reviewed"})) == ours
    assert shown(admin.get(AUDIT, {"workflow": "other"})) == [entries[("start", "other")]]


def test_filters_by_a_date_range_in_days(admin):
    day = datetime(2026, 11, 3, 12, tzinfo=UTC)
    before, inside, last_minute, after = (entry(at=day - timedelta(days=2)), entry(at=day),
                                          entry(at=day + timedelta(days=1, hours=11, minutes=59)),
                                          entry(at=day + timedelta(days=2)))
    assert shown(admin.get(AUDIT, {"since": "2026-11-03", "until": "2026-11-04"})) == [last_minute.pk, inside.pk]
    assert shown(admin.get(AUDIT, {"since": "2026-11-04"})) == [after.pk, last_minute.pk]
    assert shown(admin.get(AUDIT, {"until": "2026-11-02"})) == [before.pk]


@pytest.mark.parametrize(("query", "field", "words"), [
    ({"since": "yesterday"}, "since", "a date as YYYY-MM-DD"),
    ({"since": "2026-11-05", "until": "2026-11-01"}, "until", "before its start"),
    ({"run": "abc"}, "run", "a run is named by its id"),
    ({"action": "<script>"}, "action", "no action &#x27;&lt;script&gt;&#x27;"),
])
def test_a_bad_filter_is_refused_beside_its_field(admin, query, field, words):
    response = admin.get(AUDIT, query)
    text = response.content.decode()
    assert response.status_code == 400 and f"<strong>{field}</strong>: " in text and words in text
    assert "<script>" not in text


def test_htmx_gets_the_table_alone_and_it_keeps_the_filters_in_the_address(admin):
    entry(who="ann")
    part = admin.get(AUDIT, {"actor": "ann"}, **HTMX)
    text = part.content.decode()
    assert part.status_code == 200 and text.lstrip().startswith('<section id="audit-main"')
    assert "<html" not in text and "ann" in text
    assert "HX-Request" in part["Vary"] and part["HX-Push-Url"] == f"{AUDIT}?actor=ann"
    assert admin.get(AUDIT, {"since": "nope"}, **HTMX).status_code == 200  # htmx swaps it, errors inside


def test_a_long_trail_is_read_a_page_at_a_time(admin):
    made = [entry(who="ann").pk for _ in range(53)]
    first = admin.get(AUDIT, {"actor": "ann"})
    assert shown(first) == made[::-1][:50]
    older = first.content.decode().split('id="audit-older"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert older == f"?actor=ann&amp;before={made[3]}"
    assert shown(admin.get(AUDIT, {"actor": "ann", "before": made[3]})) == made[2::-1]


def test_what_people_typed_comes_back_escaped(admin):
    entry(AuditAction.LOGIN_FAILED, who='<img src=x onerror=alert(1)>', detail={"note": "<script>x</script>"})
    text = admin.get(AUDIT).content.decode()
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<script>x</script>" not in text


def test_the_run_page_shows_who_did_what_to_the_run_and_the_address_only_to_admins(signed_in, person, admin):
    otto = person("otto", "operator")
    run = start_run(reviewed_flow(), user=otto)[0]
    AuditEntry.objects.filter(run=run).update(address="198.51.100.7")
    cancel_run(run.pk, otto, "duplicate order")
    viewer = signed_in("vera", "viewer")
    page = viewer.get(reverse("monitoring:run_detail", args=[run.pk])).content.decode()
    panel = page.split('id="run-audit"')[1].split("</section>")[0]
    assert "started a run" in panel and "cancelled a run" in panel and "otto" in panel
    assert "198.51.100.7" not in panel and f"{AUDIT}?run=" not in panel
    panel = admin.get(reverse("monitoring:run_detail", args=[run.pk])).content.decode().split('id="run-audit"')[1]
    assert "198.51.100.7" in panel and f"{AUDIT}?run={run.pk}" in panel


def test_a_run_nobody_acted_on_has_no_audit_panel(signed_in):
    run = start_run(reviewed_flow())[0]
    page = signed_in("vera", "viewer").get(reverse("monitoring:run_detail", args=[run.pk])).content.decode()
    assert 'id="run-audit"' not in page


def test_a_run_id_in_the_filter_may_be_any_uuid(admin):
    assert admin.get(AUDIT, {"run": str(uuid.uuid4())}).status_code == 200
