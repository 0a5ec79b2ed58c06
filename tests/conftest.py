"""Puts ``tests/`` on ``sys.path`` (pytest does so for a conftest's folder),
so that the backends' test modules import the store contract suite as
``store.contract`` (``tests/store/contract.py``)."""
