"""The audit trail's table, and the role groups with their permissions (issue 16).

The groups are made here, not only by ``manage.py setup_roles``, so that every deployment has
them after ``migrate``. Permissions are created by Django after all migrations have run
(post_migrate), so on a fresh database they do not exist yet: they are created here first for
the apps the roles use. The table is frozen here, as migrations must be; ``ROLES`` in
orchestrator/roles.py is the same table for ``setup_roles``, and tests/roles checks they agree.
A later change of a role's permissions is a new migration.

The groups keep the names they had before this migration (approvers, operators, ...):
published workflow versions name them as their approvers, and a version cannot change.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

VIEW = ("orchestrator.view_run", "orchestrator.view_workflow", "designer.view_draft")
APPROVE = ("orchestrator.decide_approval",)
OPERATE = ("orchestrator.add_run", "orchestrator.change_run", "orchestrator.change_effect",
           "orchestrator.reset_breaker")
DESIGN = ("orchestrator.add_workflow", "orchestrator.change_workflow", "orchestrator.add_workflowversion",
          "orchestrator.add_run", "designer.add_draft", "designer.change_draft")
ADMIN = ("orchestrator.view_audit",)
GROUPS = {
    "viewers": VIEW,
    "approvers": VIEW + APPROVE,
    "operators": VIEW + OPERATE,
    "designers": VIEW + DESIGN,
    "admins": VIEW + APPROVE + OPERATE + DESIGN + ADMIN,
}


def make_permissions(apps, schema_editor):
    """Create the content types and permissions of the apps the roles use, as post_migrate
    would (a no-op for those that exist already)."""
    for label in ("orchestrator", "designer"):
        config = apps.get_app_config(label)
        config.models_module = True  # create_permissions skips an app without models
        try:
            create_permissions(config, verbosity=0, apps=apps, using=schema_editor.connection.alias)
        finally:
            config.models_module = None


def make_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    make_permissions(apps, schema_editor)
    for name, wanted in GROUPS.items():
        found = []
        for permission in dict.fromkeys(wanted):
            app, codename = permission.split(".", 1)
            found.append(Permission.objects.get(content_type__app_label=app, codename=codename))
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(found)


class Migration(migrations.Migration):

    dependencies = [
        ('orchestrator', '0012_api_tokens'),
        ('designer', '0001_drafts'),
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ('actor_name', models.CharField(blank=True, max_length=150)),
                ('action', models.CharField(choices=[('publish', 'published a version'), ('start', 'started a run'), ('cancel', 'cancelled a run'), ('compensate', 'cancelled a run and undid its effects'), ('redrive', 'redrove a run'), ('approve', 'approved'), ('reject', 'rejected'), ('decide_approval', 'decided an approval'), ('decide_effect', 'decided an effect'), ('reset_breaker', 'reset a circuit breaker'), ('token_created', 'created an API token'), ('token_revoked', 'revoked an API token'), ('login_failed', 'failed to sign in')], max_length=32)),
                ('target_type', models.CharField(blank=True, max_length=40)),
                ('target_id', models.CharField(blank=True, max_length=100)),
                ('workflow_name', models.CharField(blank=True, db_index=True, max_length=100)),
                ('detail', models.JSONField(blank=True, default=dict)),
                ('address', models.GenericIPAddressField(blank=True, null=True)),
                ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='audit_entries', to='orchestrator.run')),
            ],
            options={
                'ordering': ['-at', '-id'],
                'permissions': [('view_audit', 'Can view the audit trail'), ('reset_breaker', 'Can reset a circuit breaker')],
                'default_permissions': (),
                'indexes': [models.Index(fields=['action', 'at'], name='audit_action_at'), models.Index(fields=['actor_name', 'at'], name='audit_actor_at')],
            },
        ),
        migrations.RunPython(make_groups, migrations.RunPython.noop),
    ]
