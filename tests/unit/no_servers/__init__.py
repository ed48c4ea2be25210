"""The no-servers guard of the unit tests (see tests/unit/conftest.py)."""
