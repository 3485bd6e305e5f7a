from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self) -> None:
        from orchestrator.engine.signals import swept

        from . import api  # noqa: F401 (the KPI endpoint, on the project's API: orchestrator/api)
        from .bulk import resume_stalled
        from .rollups import roll_up_after_sweep

        # Bulk operations whose job was lost (a worker killed, Redis flushed) go on after a sweep.
        swept.connect(resume_stalled, dispatch_uid="monitoring.bulk.resume_stalled")
        # Hours that closed are rolled up for the KPI dashboards of long windows.
        swept.connect(roll_up_after_sweep, dispatch_uid="monitoring.rollups.roll_up_after_sweep")
