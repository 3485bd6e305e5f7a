from django.core.management.base import BaseCommand

from orchestrator.roles import ROLES, ensure_role_groups


class Command(BaseCommand):
    help = ("Create or update the role groups (approvers, operators, designers, viewers, admins) and their "
            "permissions; migrate also creates them.")

    def handle(self, **options):
        ensure_role_groups()
        for role, (group, permissions) in ROLES.items():
            self.stdout.write(f"{role}: group {group} with {', '.join(permissions)}")
