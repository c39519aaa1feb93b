"""billingkit's customer history (``relink_customer``): a user's former Stripe customers."""

from django.db import migrations, models


class Migration(migrations.Migration):
    """Create the customer history table."""

    dependencies = [("billingkit", "0001_initial")]  # noqa: RUF012 - Django's migration format

    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="StoredCustomerHistory",
            fields=[
                (
                    "customer_id",
                    models.CharField(max_length=255, primary_key=True, serialize=False),
                ),
                ("user_id", models.CharField(db_index=True, max_length=255)),
                ("email", models.CharField(max_length=512, null=True)),
                ("deleted", models.BooleanField(default=False)),
                ("watermark", models.BigIntegerField(default=0)),
                ("replaced_by", models.CharField(max_length=255)),
            ],
            options={
                "verbose_name": "former customer",
                "verbose_name_plural": "former customers",
            },
        ),
    ]
