"""Handlers this app ships: the demo workflows' (discovered at start-up by the registry)."""

from .demo import agents as agent_demos  # noqa: F401
from .demo import approvals as approval_demos  # noqa: F401
from .demo import handlers as demo_handlers  # noqa: F401
from .demo import pipeline as pipeline_handlers  # noqa: F401
from .demo import research as research_handlers  # noqa: F401
