"""Demo workflows and handlers, loaded by ``manage.py load_demo``."""

from pathlib import Path

WORKFLOWS_DIR = Path(__file__).parent / "workflows"
