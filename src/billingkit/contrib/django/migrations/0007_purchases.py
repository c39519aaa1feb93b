"""billingkit's one-time purchases (Checkout in payment mode) and their refunds."""

from django.db import migrations, models


class Migration(migrations.Migration):
    """Create the purchases table."""

    dependencies = [("billingkit", "0006_reconcile_checkpoint")]  # noqa: RUF012 - Django's format

    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="StoredPurchase",
            fields=[
                ("session_id", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("user_id", models.CharField(max_length=255)),
                ("customer_id", models.CharField(max_length=255, null=True)),
                ("plan_key", models.CharField(max_length=255, null=True)),
                ("payment_intent_id", models.CharField(db_index=True, max_length=255, null=True)),
                ("amount", models.BigIntegerField()),
                ("currency", models.CharField(max_length=3)),
                ("amount_refunded", models.BigIntegerField(default=0)),
                ("status", models.CharField(max_length=32)),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "verbose_name": "one-time purchase",
                "indexes": [
                    models.Index(fields=["user_id", "created_at"], name="billingkit_purchase_user")
                ],
            },
        ),
    ]
