"""``python -m billingkit.cli``: the same as the ``billingkit`` console script."""

from billingkit.cli import main

main()
