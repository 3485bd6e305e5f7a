from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from orchestrator.engine.definition import definition_for_version
from orchestrator.engine.errors import InputInvalid, WorkflowNotFound
from orchestrator.engine.runs import start_run
from orchestrator.models import Run, Workflow

from ..graphs import render_svg
from ..overview import workflow_rows


@login_required
@permission_required("orchestrator.view_workflow", raise_exception=True)
@require_safe
def workflow_list(request: HttpRequest) -> HttpResponse:
    return render(request, "monitoring/workflow_list.html", {"workflows": workflow_rows(timezone.now())})


def _detail_context(workflow: Workflow, form: dict[str, Any] | None = None) -> dict[str, Any]:
    versions = list(workflow.versions.select_related("created_by").order_by("-number"))
    latest = versions[0] if versions else None
    definition = definition_for_version(latest) if latest else None
    sample = definition.sample_input if definition else {}
    return {
        "workflow": workflow, "versions": versions, "latest": latest, "definition": definition,
        "graph": render_svg(definition) if definition else "",
        "recent": list(Run.objects.filter(workflow=workflow).select_related("workflow", "version", "started_by")
                       .order_by("-created_at")[:15]),
        "form": form or {"input": json.dumps(sample, indent=2), "idempotency_key": "", "errors": {}},
    }


@login_required
@permission_required("orchestrator.view_workflow", raise_exception=True)
@require_safe
def workflow_detail(request: HttpRequest, name: str) -> HttpResponse:
    workflow = get_object_or_404(Workflow, name=name)
    return render(request, "monitoring/workflow_detail.html", _detail_context(workflow))


@login_required
@permission_required("orchestrator.add_run", raise_exception=True)
@require_POST
def start(request: HttpRequest, name: str) -> HttpResponse:
    """Start a run from the workflow page: the input must be JSON that satisfies the version's
    input schema; errors are shown beside the field and nothing is started."""
    workflow = get_object_or_404(Workflow, name=name)
    text, key = request.POST.get("input", ""), request.POST.get("idempotency_key", "").strip()
    errors: dict[str, str] = {}
    try:
        payload = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        errors["input"] = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if len(key) > 200:
        errors["idempotency_key"] = "at most 200 characters"
    if not errors:
        try:
            run, _ = start_run(workflow, payload, idempotency_key=key or None, user=request.user)
        except InputInvalid as invalid:
            errors["input"] = str(invalid)
            errors.update({f"input.{field}": message for field, message in invalid.fields.items()})
        except WorkflowNotFound as missing:
            errors["input"] = str(missing)
        else:
            return redirect("monitoring:run_detail", run_id=run.pk)
    form = {"input": text, "idempotency_key": key, "errors": errors}
    return render(request, "monitoring/workflow_detail.html", _detail_context(workflow, form), status=400)
