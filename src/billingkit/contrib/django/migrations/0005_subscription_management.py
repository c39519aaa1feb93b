"""Subscription management: a subscription's item id and the schedule driving it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    """Add ``item_id`` and ``schedule_id`` to the stored subscriptions."""

    dependencies = [("billingkit", "0004_invoices")]  # noqa: RUF012 - Django's format

    operations = [  # noqa: RUF012
        migrations.AddField(
            model_name="storedsubscription",
            name="item_id",
            field=models.CharField(max_length=255, null=True),
        ),
        migrations.AddField(
            model_name="storedsubscription",
            name="schedule_id",
            field=models.CharField(max_length=255, null=True),
        ),
    ]
