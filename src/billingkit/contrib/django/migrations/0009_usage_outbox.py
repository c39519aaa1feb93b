"""Usage-based billing: the usage outbox table."""

from django.db import migrations, models


class Migration(migrations.Migration):
    """Create ``StoredUsage`` and its two indexes."""

    dependencies = [("billingkit", "0008_payment_methods")]  # noqa: RUF012 - Django's format

    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="StoredUsage",
            fields=[
                (
                    "identifier",
                    models.CharField(max_length=100, primary_key=True, serialize=False),
                ),
                ("user_id", models.CharField(max_length=255)),
                ("event_name", models.CharField(max_length=100)),
                ("value", models.BigIntegerField()),
                ("timestamp", models.DateTimeField()),
                ("recorded_at", models.DateTimeField()),
                ("status", models.CharField(max_length=16)),
                ("attempts", models.IntegerField()),
                ("last_error", models.TextField(null=True)),
                ("next_attempt_at", models.DateTimeField(null=True)),
                ("sent_at", models.DateTimeField(null=True)),
            ],
            options={
                "verbose_name": "usage record",
                "indexes": [
                    models.Index(fields=["status", "recorded_at"], name="billingkit_usage_due"),
                    models.Index(
                        fields=["user_id", "event_name", "timestamp"],
                        name="billingkit_usage_user",
                    ),
                ],
            },
        ),
    ]
