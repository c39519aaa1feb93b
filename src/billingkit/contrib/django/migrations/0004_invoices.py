"""Invoice history and the charges (payments) behind it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    """Create ``StoredInvoice`` and ``StoredCharge``."""

    dependencies = [("billingkit", "0003_deferred_events")]  # noqa: RUF012 - Django's format

    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="StoredCharge",
            fields=[
                ("key", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("charge_id", models.CharField(max_length=255, null=True)),
                ("payment_intent_id", models.CharField(max_length=255, null=True)),
                ("invoice_id", models.CharField(db_index=True, max_length=255, null=True)),
                ("customer_id", models.CharField(max_length=255, null=True)),
                ("amount", models.BigIntegerField(null=True)),
                ("currency", models.CharField(max_length=3, null=True)),
                ("amount_refunded", models.BigIntegerField()),
                ("refunded", models.BooleanField()),
                ("created", models.DateTimeField(null=True)),
            ],
            options={
                "verbose_name": "charge",
            },
        ),
        migrations.CreateModel(
            name="StoredInvoice",
            fields=[
                ("id", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("customer_id", models.CharField(db_index=True, max_length=255, null=True)),
                ("user_id", models.CharField(db_index=True, max_length=255, null=True)),
                ("number", models.CharField(max_length=255, null=True)),
                ("status", models.CharField(max_length=16)),
                ("billing_reason", models.CharField(max_length=255, null=True)),
                ("subscription_id", models.CharField(max_length=255, null=True)),
                ("period_start", models.DateTimeField(null=True)),
                ("period_end", models.DateTimeField(null=True)),
                ("currency", models.CharField(max_length=3, null=True)),
                ("total", models.BigIntegerField(null=True)),
                ("amount_due", models.BigIntegerField(null=True)),
                ("amount_paid", models.BigIntegerField(null=True)),
                ("amount_remaining", models.BigIntegerField(null=True)),
                ("created", models.DateTimeField(null=True)),
                ("hosted_invoice_url", models.TextField(null=True)),
                ("invoice_pdf", models.TextField(null=True)),
                ("lines", models.JSONField(default=list)),
                ("attempt_count", models.IntegerField(null=True)),
                ("next_payment_attempt", models.DateTimeField(null=True)),
                ("payment_intent_id", models.CharField(max_length=255, null=True)),
                ("charge_id", models.CharField(max_length=255, null=True)),
                ("livemode", models.BooleanField()),
                ("watermark", models.BigIntegerField()),
            ],
            options={
                "verbose_name": "invoice",
            },
        ),
    ]
