"""A run's context as one entry per step (models/context.py): the ``context`` column stays
where it is and holds the run's starting context; the model calls it ``context_base``.

Runs already under way keep their whole context in that column: with no entries, it is their
context, and their next steps add entries to it.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("orchestrator", "0013_audit_and_roles"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name="run", name="context"),
                migrations.AddField(
                    model_name="run",
                    name="context_base",
                    field=models.JSONField(blank=True, db_column="context", default=dict,
                                           help_text="The run's starting context; steps add entries to it."),
                ),
            ],
        ),
        migrations.CreateModel(
            name="ContextEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.CharField(max_length=200)),
                ("value", models.JSONField(blank=True, null=True,
                                           help_text="The value, when it is not an attempt's output.")),
                ("attempt", models.ForeignKey(blank=True, help_text="The attempt whose output is the value (not copied here).",
                                              null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                              to="orchestrator.stepattempt")),
                ("run", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="context_entries",
                                          to="orchestrator.run")),
            ],
            options={
                "verbose_name_plural": "context entries",
                "indexes": [models.Index(fields=["run", "id"], name="context_entry_run_id")],
            },
        ),
    ]
