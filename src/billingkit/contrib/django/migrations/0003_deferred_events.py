"""Deferred webhook processing: when a failed event is due again, and the drain index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    """Add ``next_attempt_at`` and the index the drain query uses."""

    dependencies = [("billingkit", "0002_customer_history")]  # noqa: RUF012 - Django's format

    operations = [  # noqa: RUF012
        migrations.AddField(
            model_name="storedevent",
            name="next_attempt_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddIndex(
            model_name="storedevent",
            index=models.Index(fields=["status", "created"], name="billingkit_event_due"),
        ),
    ]
