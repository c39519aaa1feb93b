# billingkit's customer history (relink_customer), as Django's makemigrations writes it.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('billingstore', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='StoredCustomerHistory',
            fields=[
                ('customer_id', models.CharField(max_length=255, primary_key=True, serialize=False)),
                ('user_id', models.CharField(db_index=True, max_length=255)),
                ('email', models.CharField(max_length=512, null=True)),
                ('deleted', models.BooleanField(default=False)),
                ('watermark', models.BigIntegerField(default=0)),
                ('replaced_by', models.CharField(max_length=255)),
            ],
        ),
    ]
