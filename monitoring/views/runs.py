from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST, require_safe

from orchestrator.engine import history
from orchestrator.engine.budgets import limits
from orchestrator.engine.definition import definition_for_version
from orchestrator.engine.errors import InvalidTransition
from orchestrator.engine.runs import DECISIONS, cancel_run, decide_effect, redrive_run
from orchestrator.models import Effect, EffectStatus, FailureMode, Run, RunStatus, Workflow

from .. import attempt_rows, inbox
from ..graphs import render_svg
from ..run_page import FILTER_BOXES, HistoryFilter, for_htmx, selecting_links, selector
from ..runlist import RunFilter, current_states, runs_page
from ..timeline import aggregates, timeline_svg
from ..timeline import legend as timeline_legend
from .audit import run_audit
from .saved_views import run_list_tools

# htmx stops polling when a fragment answers 286.
STOP_POLLING = 286
EVENTS_PAGE = 100


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_safe
def run_list(request: HttpRequest) -> HttpResponse:
    """Runs, newest first, filtered by the query string; the rows refresh themselves while any
    shown run is live (the fragment keeps filters and cursor, so scroll and selection stay)."""
    filters = RunFilter.from_query(request.GET)
    page = runs_page(filters, request.GET.get("after", ""))
    context: dict[str, Any] = {
        "filters": filters, "page": page, "where": current_states(page.runs),
        "query": urlencode(filters.as_query()), "statuses": RunStatus.choices,
        "failure_modes": FailureMode.choices, "workflows": Workflow.objects.order_by("name").values_list(
            "name", flat=True),
        "after": request.GET.get("after", ""),
    }
    if request.htmx and request.GET.get("fragment") == "rows":
        response = render(request, "monitoring/_run_rows.html", context)
        if all(run.is_terminal for run in page.runs):
            response.status_code = STOP_POLLING
        return response
    context.update(run_list_tools(request, filters))
    return render(request, "monitoring/run_list.html", context, status=400 if filters.errors else 200)


def _run_context(run: Run, shown: HistoryFilter | None = None, opened: tuple[int, int] | None = None,
                 user: Any = None) -> dict[str, Any]:
    shown = shown or HistoryFilter()
    definition = definition_for_version(run.version)
    marks = history.state_marks(run)
    ledger = history.effects_ledger(run)
    attempts = history.timeline(run, tracebacks=False)
    select = selector(run, shown)
    return {
        "run": run, "definition": definition, "budgets": limits(definition, run),
        "graph": selecting_links(render_svg(definition, marks=marks, counts=history.fork_counts(run),
                                             selected=shown.state or None, link=select)),
        "marks": marks, "effects": ledger,
        "timeline": timeline_svg(attempts, run.created_at, run.finished_at, selected=shown.state,
                                 select=lambda state: for_htmx(select(state))),
        "timeline_legend": timeline_legend(aggregated=aggregates(attempts)),
        "committed": [e for e in ledger if e.status in (EffectStatus.CONFIRMED, "compensation_failed")],
        "children": list(run.children.select_related("workflow").order_by("created_at")),
        "decisions": DECISIONS, "filter_boxes": FILTER_BOXES,
        "approval_cards": inbox.run_cards(run, user),
        **attempt_rows.table_context(run, shown, attempts, definition.states, opened),
    }


def _load_run(run_id: Any) -> Run:
    return get_object_or_404(Run.objects.select_related("workflow", "version", "started_by", "parent",
                                                        "failed_attempt"), pk=run_id)


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_safe
def run_detail(request: HttpRequest, run_id: Any) -> HttpResponse:
    """The run: graph, attempts, effects, context, history, and its actions. The live part is one
    fragment polled every two seconds until the run ends (then 286 stops the polling).

    The query string filters the history and selects a state (``?state=``: marked on the graph,
    highlighted on the timeline and attempts, the history narrowed to it); htmx asks for the part
    it swaps by its target: ``history`` (filters) or ``run-live`` (a selection, or the poll), and
    for the next attempts of a long run's table by ``fragment=attempts`` with ``attempts_from`` and
    ``attempts_to`` (without htmx, the same address is the whole page with those attempts shown)."""
    run = _load_run(run_id)
    states = definition_for_version(run.version).states
    shown = HistoryFilter.from_query(request.GET, states)
    opened = attempt_rows.opened_range(request.GET)
    target = request.htmx.target if request.htmx else None
    if target == "history":
        response = render(request, "monitoring/_events.html", _history_context(run, shown, None, states, whole=True))
    elif request.htmx and request.GET.get("fragment") == "attempts" and opened is None:
        response = HttpResponseBadRequest("attempts_from and attempts_to must be two attempt ids, in order")
    elif request.htmx and request.GET.get("fragment") == "attempts":
        entries = history.timeline(run, tracebacks=False)
        response = render(request, "monitoring/_attempts.html",
                          {"run": run, "shown": shown, **attempt_rows.table_context(run, shown, entries, states, opened,
                                                                           fragment=True)})
    else:
        context = {**_run_context(run, shown, opened, user=request.user),
                   **_history_context(run, shown, None, states, whole=True)}
        polled = request.GET.get("fragment") == "live"
        if request.htmx and (polled or target == "run-live"):
            response = render(request, "monitoring/_run_live.html", context)
            if polled and run.is_terminal:
                response.status_code = STOP_POLLING
        else:
            context["last_good_version"] = _last_good_version(run)
            context["audit_entries"] = run_audit(run)
            response = render(request, "monitoring/run_detail.html", context, status=400 if shown.errors else 200)
    patch_vary_headers(response, ("HX-Request", "HX-Target"))  # one URL, a page or one of its parts
    return response


def _last_good_version(run: Run) -> int | None:
    """The version of the workflow's last run that succeeded, when it is not this run's: what
    "compare with it" diffs against (one query; the full page only, never the live poll)."""
    number = Run.objects.filter(workflow_id=run.workflow_id, status=RunStatus.SUCCEEDED).order_by(
        "-finished_at").values_list("version__number", flat=True).first()
    return number if number is not None and number != run.version.number else None


def _events_page(run: Run, after: str | None, shown: HistoryFilter | None = None) -> tuple[list[Any], int | None]:
    """A page of the run's events matching ``shown``, oldest first, after event id ``after``; and
    where the next page starts (None: this is the last)."""
    shown = shown or HistoryFilter()
    events = history.events(run, history.kinds_of(shown.groups), state=shown.state, by_person=shown.by_person)
    if after and after.isdigit():
        events = events.filter(id__gt=int(after))
    found = list(events[: EVENTS_PAGE + 1])
    page = found[:EVENTS_PAGE]
    return page, (page[-1].pk if len(found) > EVENTS_PAGE else None)


@login_required
@permission_required("orchestrator.view_run", raise_exception=True)
@require_safe
def run_events(request: HttpRequest, run_id: Any) -> HttpResponse:
    """The next page of a run's history (a long history is never loaded all at once), with the
    same filters as the page that asked for it."""
    run = get_object_or_404(Run.objects.select_related("version"), pk=run_id)
    states = definition_for_version(run.version).states
    shown = HistoryFilter.from_query(request.GET, states)
    context = _history_context(run, shown, request.GET.get("after", ""), states, whole=False)
    return render(request, "monitoring/_events.html", context, status=400 if shown.errors else 200)


def _history_context(run: Run, shown: HistoryFilter, after: str | None, states: Collection[str], *,
                     whole: bool) -> dict[str, Any]:
    """What _events.html needs: the page of events, the filters and their URLs; ``whole`` renders
    the history block with its filters (a page, or htmx swapping the history), else only rows."""
    events, more = _events_page(run, after, shown)
    base = reverse("monitoring:run_detail", args=[run.pk])
    and_query = f"{shown.query()}&" if shown.active else ""
    return {
        "run": run, "events": events, "events_next": more, "whole": whole, "shown": shown,
        "event_groups": [(key, label) for key, (label, _) in history.EVENT_GROUPS.items()],
        "state_names": sorted(states),
        "run_url": base, "live_url": f"{base}?{and_query}fragment=live",
        "more_url": reverse("monitoring:run_events", args=[run.pk]) + f"?{and_query}after={more}",
        "clear_selection_url": f"{base}?{shown.query(state='')}".rstrip("?"),
        "clear_filters_url": f"{base}?{shown.query(kind=[], operator='')}".rstrip("?"),
    }


def _act(request: HttpRequest, run_id: Any, action: Any, done: str) -> HttpResponse:
    try:
        action()
    except InvalidTransition as refused:
        messages.error(request, f"Refused: {refused}")
    else:
        messages.success(request, done)
    return redirect("monitoring:run_detail", run_id=run_id)


@login_required
@permission_required("orchestrator.change_run", raise_exception=True)
@require_POST
def cancel(request: HttpRequest, run_id: Any) -> HttpResponse:
    """Cancel the run; with ``compensate``, its confirmed effects are undone first, newest first."""
    run = get_object_or_404(Run, pk=run_id)
    reason = request.POST.get("reason", "").strip()[:500] or f"cancelled by {request.user.get_username()}"
    compensate = request.POST.get("compensate") == "1"
    done = ("Run cancelled; its confirmed effects are being undone, newest first." if compensate
            else "Run cancelled.")
    return _act(request, run.pk, lambda: cancel_run(run.pk, user=request.user, reason=reason, compensate=compensate),
                done)


@login_required
@permission_required("orchestrator.change_run", raise_exception=True)
@require_POST
def redrive(request: HttpRequest, run_id: Any) -> HttpResponse:
    run = get_object_or_404(Run, pk=run_id)
    return _act(request, run.pk, lambda: redrive_run(run.pk, user=request.user),
                "Run redriven from the step that failed; effects already confirmed will not run again.")


@login_required
@permission_required("orchestrator.change_effect", raise_exception=True)
@require_POST
def decide(request: HttpRequest, run_id: Any, effect_id: int) -> HttpResponse:
    effect = get_object_or_404(Effect, pk=effect_id, run_id=run_id)
    decision = request.POST.get("decision", "")
    if decision not in DECISIONS:
        messages.error(request, f"Unknown decision {decision!r}; use one of {', '.join(DECISIONS)}.")
        return redirect("monitoring:run_detail", run_id=run_id)
    return _act(request, run_id, lambda: decide_effect(effect.pk, decision, user=request.user),
                f"Decision recorded for effect {effect.key!r}: {decision}.")
