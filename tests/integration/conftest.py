"""One Prefect test harness (a real temporary Prefect API server) for the whole session."""

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    # A fresh server takes ~20 s on a 2-core machine; start it once.
    with prefect_test_harness(server_startup_timeout=180):
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
