"""What the workflow endpoints (workflows.py) take and answer, declared for the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema

Format = Literal["yaml", "json"]
MAX_SOURCE = 200_000  # characters: well under Django's 2.5 MB body limit, even in 4-byte UTF-8


class FindingOut(Schema):
    code: str
    severity: str = Field(description="error (blocks publishing) or warning")
    message: str
    state: str | None = Field(description="the state the finding concerns, if one")
    path: str | None = Field(description="where in the document: states.<name> for a top-level state")
    line: int | None = Field(description="the line (1-based) of the source where the state is, when known")
    column: int | None = None


class DraftOut(Schema):
    revision: int = Field(description="send it back when you update or publish the draft")
    format: str
    source: str
    note: str
    author: str | None
    updated_at: datetime
    findings: list[FindingOut]


class VersionOut(Schema):
    number: int
    created_at: datetime
    created_by: str | None
    message: str


class WorkflowOut(Schema):
    name: str
    title: str
    topology: str
    latest_version: int | None


class WorkflowDetail(WorkflowOut):
    description: str
    draft: DraftOut | None = Field(description="the working copy people edit; null when nobody opened one")
    versions: list[VersionOut] = Field(description="published versions, oldest first")


class DefinitionIn(Schema):
    """A definition: its ``source`` text (YAML or JSON), or the ``definition`` as a JSON object."""

    source: str | None = Field(default=None, max_length=MAX_SOURCE, description="YAML or JSON text")
    format: Format | None = Field(default=None, description="of source; guessed when left out ('{' first: json)")
    definition: dict[str, Any] | None = Field(default=None, description="the definition as a JSON object")


class DraftIn(Schema):
    revision: int = Field(ge=1, description="the draft revision you read (a stale one is refused with 409)")
    source: str = Field(max_length=MAX_SOURCE)
    format: Format | None = Field(default=None, description="the draft's own format when left out")


class PublishIn(Schema):
    revision: int = Field(ge=1, description="the draft revision you read and mean to publish")
    message: str = Field(default="", max_length=500, description="what changed, for the versions list")


class ImportIn(DefinitionIn):
    publish: bool = Field(default=False, description="publish it as the next version instead of making a draft")
    message: str = Field(default="", max_length=500, description="the version's message, when publishing")


class ImportOut(Schema):
    mode: Literal["draft", "version"] = Field(description="what the import made")
    created: bool = Field(description="false when publishing content an existing version already has")
    draft: DraftOut | None
    version: VersionOut | None


class PublishedOut(VersionOut):
    created: bool = Field(description="false when an existing version already has this content")


class ValidationOut(Schema):
    valid: bool = Field(description="no finding of severity error: it can be published")
    findings: list[FindingOut]


class ExportQuery(Schema):
    format: Format = "yaml"
    version: int | None = Field(default=None, ge=1, description="the latest version when left out")


class DiffQuery(Schema):
    old: int = Field(ge=1, description="the older version's number")
    new: int = Field(ge=1, description="the newer version's number")


class ChangeOut(Schema):
    key: str
    change: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None


class StateChangeOut(Schema):
    state: str
    fields: list[ChangeOut]


class TransitionOut(Schema):
    source: str
    target: str
    where: str


class DiffOut(Schema):
    old: int
    new: int
    empty: bool
    added: list[str]
    removed: list[str]
    changed: list[StateChangeOut]
    transitions_added: list[TransitionOut]
    transitions_removed: list[TransitionOut]
    workflow: list[ChangeOut] = Field(description="the workflow's own fields (budgets, schemas, ...) changed")
