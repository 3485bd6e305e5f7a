import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orchestrator.engine import approvals
from orchestrator.engine.errors import ApprovalRefused


class Command(BaseCommand):
    help = ("Decide a run's approval as a user: the request pending at STATE, or, if the run has not got there "
            "yet, a decision kept until it does (refused at once when it could never apply).")

    def add_arguments(self, parser):
        parser.add_argument("run", help="the run's id")
        parser.add_argument("state", help="the approval state (or gated state) to decide")
        parser.add_argument("outcome", help="approve, reject, or a labelled outcome of that approval")
        parser.add_argument("--user", required=True, help="who decides (their permissions and four-eyes apply)")
        parser.add_argument("--comment", default="")
        parser.add_argument("--data", default=None, help="edited data, as JSON, where the approval allows edits")

    def handle(self, run, state, outcome, user, comment, data, **options):
        person = get_user_model().objects.filter(username=user).first()
        if person is None:
            raise CommandError(f"no user named {user!r}")
        edited = approvals.NO_EDIT
        if data is not None:
            try:
                edited = json.loads(data)
            except json.JSONDecodeError as exc:
                raise CommandError(f"--data is not valid JSON: {exc}") from exc
        try:
            request = approvals.decide_ahead(run, state, person, outcome, comment, edited)
        except ApprovalRefused as refused:
            raise CommandError(f"refused: {refused}") from refused
        when = "applied" if request.attempt_id else "kept until the run reaches it"
        self.stdout.write(f"{outcome} for '{state}' of run {run} by {user}: {when}")
