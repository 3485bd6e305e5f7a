"""The starters are working examples: published as they come, the saga starter runs with its
sample input, fails at its last step and undoes its confirmed effects, newest first."""

from __future__ import annotations

import pytest

from designer.source import parse
from designer.starters import starter_source
from orchestrator.engine.runs import start_run
from orchestrator.engine.workflows import publish
from orchestrator.models import EffectStatus, RunStatus

from ..engine.test_approvals import play

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_the_saga_starter_undoes_its_effects_when_its_last_step_fails(redis_conn, sink_path, fast_engine):
    doc = parse(starter_source("saga", "refund_saga"), "yaml")
    publish(doc)
    run = play(start_run("refund_saga", doc["sample_input"])[0])
    assert run.status == RunStatus.FAILED
    effects = {effect.key.rsplit(":", 1)[-1]: effect.status for effect in run.effects.all()}
    assert set(effects.values()) == {EffectStatus.COMPENSATED}, effects
    assert len(effects) == 2  # the reversal and the e-mail, both undone
