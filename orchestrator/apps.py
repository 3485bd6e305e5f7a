from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Ratchet engine"

    def ready(self) -> None:
        from . import accounts  # noqa: F401 (connects the sign-in throttling's signal receivers)
        from .engine.registry import autodiscover

        autodiscover()
