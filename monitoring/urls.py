from django.urls import path

from .views import audit, bulk, dashboards, failures, flow, home, runs, saved_views, workflows
from .views.approvals import approvals_badge, approvals_inbox, claim_approval, decide_approval, decide_approvals
from .views.queues import queues

app_name = "monitoring"

urlpatterns = [
    path("", home.home, name="home"),
    path("workflows/", workflows.workflow_list, name="workflow_list"),
    path("workflows/<slug:name>/", workflows.workflow_detail, name="workflow_detail"),
    path("workflows/<slug:name>/start", workflows.start, name="start_run"),
    path("runs/", runs.run_list, name="run_list"),
    path("runs/bulk/", bulk.confirm, name="bulk_confirm"),
    path("runs/bulk/start", bulk.start, name="bulk_start"),
    path("runs/bulk/<int:operation_id>/", bulk.detail, name="bulk_detail"),
    path("runs/bulk/<int:operation_id>/stop", bulk.stop, name="bulk_stop"),
    path("runs/views/save", saved_views.save, name="save_view"),
    path("runs/views/<int:view_id>/delete", saved_views.delete, name="delete_view"),
    path("runs/<uuid:run_id>/", runs.run_detail, name="run_detail"),
    path("runs/<uuid:run_id>/events", runs.run_events, name="run_events"),
    path("runs/<uuid:run_id>/cancel", runs.cancel, name="cancel_run"),
    path("runs/<uuid:run_id>/redrive", runs.redrive, name="redrive_run"),
    path("runs/<uuid:run_id>/effects/<int:effect_id>/decide", runs.decide, name="decide_effect"),
    path("approvals/", approvals_inbox, name="approvals"),
    path("approvals/badge", approvals_badge, name="approvals_badge"),
    path("approvals/decide-many", decide_approvals, name="decide_approvals"),
    path("approvals/<int:request_id>/decide", decide_approval, name="decide_approval"),
    path("approvals/<int:request_id>/claim", claim_approval, name="claim_approval"),
    path("dashboards/kpis/", dashboards.kpi_dashboard, name="kpi_dashboard"),
    path("failures/", failures.failure_dashboard, name="failures"),
    path("failures/acknowledge", failures.acknowledge_cluster, name="acknowledge_cluster"),
    path("queues/", queues, name="queues"),
    path("flow/", flow.flow_control, name="flow"),
    path("flow/breakers/reset", flow.reset_breaker, name="reset_breaker"),
    path("audit/", audit.audit_trail, name="audit"),
]
