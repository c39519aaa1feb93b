"""billingkit's reconcile checkpoints; subscriptions indexed by ``created``."""

from django.db import migrations, models


class Migration(migrations.Migration):
    """Create the reconcile checkpoint table; index the subscriptions' creation time."""

    dependencies = [("billingkit", "0005_subscription_management")]  # noqa: RUF012 - Django's migration format

    operations = [  # noqa: RUF012
        migrations.AlterField(
            model_name="storedsubscription",
            name="created",
            field=models.DateTimeField(db_index=True),
        ),
        migrations.CreateModel(
            name="StoredReconcileCheckpoint",
            fields=[
                ("name", models.CharField(max_length=100, primary_key=True, serialize=False)),
                ("scope", models.CharField(max_length=512)),
                ("starting_after", models.CharField(max_length=255)),
                ("counts", models.JSONField()),
                ("updated_at", models.DateTimeField()),
            ],
            options={"verbose_name": "reconcile checkpoint"},
        ),
    ]
