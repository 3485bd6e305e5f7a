"""What a new workflow starts from: an empty draft, or a small working example of each
topology (YAML with comments, so the source tab explains itself). Every starter validates."""

from __future__ import annotations

STARTERS: dict[str, tuple[str, str]] = {
    "empty": ("Empty", """\
name: {name}
# Add states from the palette, or write them here.
start_at: done
states:
  done:
    type: succeed
"""),
    "single_agent": ("Single agent", """\
name: {name}
topology: single
budgets:
  max_steps: 20  # the agent's loop is bounded
start_at: assistant
states:
  assistant:
    type: agent
    provider: offline
    instructions: Answer the customer's question.
    end: true
"""),
    "pipeline": ("Pipeline", """\
name: {name}
topology: pipeline
start_at: ingest
states:
  ingest:
    type: task
    handler: demo.noop
    next: summarise
  summarise:
    type: task
    handler: demo.noop
    next: publish
  publish:
    type: task
    handler: demo.noop
    end: true
"""),
    "supervisor_worker": ("Supervisor and workers", """\
name: {name}
topology: supervisor_worker
start_at: research
states:
  research:
    type: parallel
    branches:
      retrieve:
        start_at: retrieve_step
        states:
          retrieve_step: {{type: task, handler: demo.noop, end: true}}
      analyse:
        start_at: analyse_step
        states:
          analyse_step: {{type: task, handler: demo.noop, end: true}}
    reducer:
      strategy: collect  # how branch outputs merge
      on_conflict: error
    next: done
  done:
    type: succeed
"""),
    "peer_network": ("Peer network", """\
name: {name}
topology: network
budgets:
  max_depth: 3  # handoffs a run may make
start_at: triage
states:
  triage:
    type: agent
    provider: offline
    instructions: Decide who handles the request.
    routes: [billing, done]
  billing:
    type: agent
    provider: offline
    instructions: Handle billing questions.
    end: true
  done:
    type: succeed
"""),
    "approval": ("Approval flow", """\
name: {name}
topology: pipeline
start_at: prepare
states:
  prepare:
    type: task
    handler: demo.noop
    next: review
  review:
    type: approval
    title: Approve this request?
    reject: rejected
    next: done
  done:
    type: succeed
  rejected:
    type: fail
    error: Rejected
"""),
    "saga": ("Saga (undo on failure)", """\
name: {name}
topology: pipeline
# Each effect carries its compensation (ctx.effect(..., compensate=...)). Put fail_at:
# close_ticket in the input: the last step fails, and the run undoes the e-mail, then the
# reversal, newest first, before it ends failed.
input_schema:
  type: object
  required: [order_id, amount, customer]
  properties:
    order_id: {{type: string}}
    amount: {{type: number}}
    customer: {{type: string}}
    fail_at: {{enum: [close_ticket]}}
sample_input: {{order_id: A-1001, amount: 40, customer: ada@example.com, fail_at: close_ticket}}
start_at: check
states:
  check:
    type: task
    handler: demo.refund_check
    next: reverse
  reverse:
    type: task
    handler: demo.reverse_charge
    next: email
  email:
    type: task
    handler: demo.email_customer
    next: close_ticket
  close_ticket:
    type: task
    handler: demo.close_ticket
    end: true
"""),
}
STARTER_NAMES = [(key, label) for key, (label, _) in STARTERS.items()]


def starter_source(key: str, name: str) -> str:
    label_text = STARTERS.get(key)
    if label_text is None:
        from .edits import EditError

        raise EditError(f"unknown starter {key!r}; use one of {', '.join(STARTERS)}")
    return label_text[1].format(name=name)
