"""A line of execution's context and liveness (see ``models/lines.py`` for the model).

The main line is the run itself (``line`` is None): its context is ``Run.context``, one entry per
stored output (models/context.py). A branch
reads the run's context overlaid with its ancestors' and its own outputs, and writes only its
own, so siblings never overwrite each other.
"""

from __future__ import annotations

from typing import Any

from ..models import Line, LineStatus, Run, RunStatus


def ancestors(line: Line | None) -> list[Line]:
    """The line and the lines it forked from, outermost first."""
    chain = []
    while line is not None:
        chain.append(line)
        line = line.fork.line
    return list(reversed(chain))


def view(run: Run, line: Line | None) -> dict[str, Any]:
    """The context a step on ``line`` sees."""
    if line is None:
        return run.context
    seen = dict(run.context)
    for outer in ancestors(line):
        seen.update(outer.context)
    return seen


def input_view(run: Run, definition: Any, state: Any, line: Line | None) -> dict[str, Any]:
    """What ``state``'s input is read from: on the main line, when no path of it names an
    output and the context is not read yet, the run's starting context, so the steps' outputs
    are not read for nothing (they are entries of their own: models/context.py)."""
    if line is None and "_context" not in run.__dict__ and not definition.reads_outputs(state):
        return run.context_base
    return view(run, line)


def store(run: Run, line: Line | None, key: str, value: Any, attempt: Any = None) -> None:
    """Record a step's output in its line's own context (``attempt``: the attempt whose output
    ``value`` is; the main line then refers to it instead of storing it again)."""
    if line is None:
        run.put_context(key, value, attempt)
    else:
        line.context[key] = value
        Line.objects.filter(pk=line.pk).update(context=line.context)


def is_live(run: Run, line: Line | None) -> bool:
    """May this line schedule work? The run is running, and so is the branch."""
    return run.status == RunStatus.RUNNING and (line is None or line.status == LineStatus.RUNNING)
