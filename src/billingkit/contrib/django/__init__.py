"""Django glue: a reusable app holding billingkit's tables and the Django ORM repository.

Add ``"billingkit.contrib.django"`` to ``INSTALLED_APPS`` (app label ``billingkit``) and run
``manage.py migrate``: four models (``models.py``), their migrations, and
:class:`billingkit.contrib.django.repository.DjangoRepository`, which passes billingkit's
Repository contract suite on SQLite and PostgreSQL.

Only this package of billingkit imports Django (``pip install "billingkit[django]"``).
"""
