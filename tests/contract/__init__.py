"""The Repository contract suite: one set of tests every Repository adapter must pass.

Reuse it with ``from tests.contract.repository_contract import RepositoryContract``
(see the docstring of :mod:`tests.contract.repository_contract`).
"""
