"""billingstore: billingkit's ``Repository`` port written with the Django ORM.

A small reusable Django app: four models (``models.py``), their migrations, and
:class:`billingstore.repository.DjangoRepository`, which passes billingkit's Repository
contract suite (``tests/contract/repository_contract.py``) on SQLite and PostgreSQL.
"""
