from django.apps import AppConfig


class DesignerConfig(AppConfig):
    name = "designer"

    def ready(self) -> None:
        from . import api  # noqa: F401 (the workflow endpoints, on the project's API: orchestrator/api)
