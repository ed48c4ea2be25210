"""The fault suite: real processes on loopback, faults injected, the outcome tabulated."""

from collections.abc import Iterator

import pytest

from tests.fixtures.fault_report import REPORT, FaultReport


@pytest.fixture(scope="session", autouse=True)
def _prefect(prefect_api: None) -> None:
    """Fault scenarios run flows (promotion, rollout) against the session's Prefect API."""


@pytest.fixture(scope="session")
def fault_report() -> Iterator[FaultReport]:
    yield REPORT


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults" in str(item.fspath):
            item.add_marker(pytest.mark.faults)
