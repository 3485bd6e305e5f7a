from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Ratchet engine"

    def ready(self) -> None:
        from .engine.registry import autodiscover

        autodiscover()
