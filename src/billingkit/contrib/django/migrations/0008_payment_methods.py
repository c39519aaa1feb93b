"""Payment methods, customers' default payment methods and Stripe entitlement summaries."""

from django.db import migrations, models


class Migration(migrations.Migration):
    """Create the three tables (SQLAlchemy: Alembic ``bk0008``)."""

    dependencies = [("billingkit", "0007_purchases")]  # noqa: RUF012 - Django's format

    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="StoredPaymentMethod",
            fields=[
                ("id", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("customer_id", models.CharField(db_index=True, max_length=255, null=True)),
                ("type", models.CharField(max_length=64)),
                ("card_brand", models.CharField(max_length=64, null=True)),
                ("last4", models.CharField(max_length=16, null=True)),
                ("exp_month", models.IntegerField(null=True)),
                ("exp_year", models.IntegerField(null=True)),
                ("wallet", models.CharField(max_length=64, null=True)),
                ("detached", models.BooleanField(default=False)),
                ("created", models.DateTimeField(null=True)),
                ("watermark", models.BigIntegerField(default=0)),
            ],
            options={"verbose_name": "payment method"},
        ),
        migrations.CreateModel(
            name="StoredDefaultPaymentMethod",
            fields=[
                (
                    "customer_id",
                    models.CharField(max_length=255, primary_key=True, serialize=False),
                ),
                ("payment_method_id", models.CharField(max_length=255, null=True)),
                ("watermark", models.BigIntegerField(default=0)),
            ],
            options={"verbose_name": "default payment method"},
        ),
        migrations.CreateModel(
            name="StoredEntitlements",
            fields=[
                (
                    "customer_id",
                    models.CharField(max_length=255, primary_key=True, serialize=False),
                ),
                ("lookup_keys", models.JSONField(default=list)),
                ("watermark", models.BigIntegerField(default=0)),
            ],
            options={
                "verbose_name": "entitlement summary",
                "verbose_name_plural": "entitlement summaries",
            },
        ),
    ]
