"""Integration tests run flows against the session's Prefect test harness."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _prefect(prefect_api: None) -> None:
    """Every integration test runs against the session's Prefect API."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
