"""Remote reads retry when the registry did not answer, and only then (tasks/options.py).

Runs real Prefect tasks against the session's Prefect API; the registry's failure is raised
by the task body, standing in for MLflow refusing connections (the fault suite covers a
real registry outage end to end)."""

from prefect import Task, flow, task

from chassis.errors import RegistryError, RegistryUnreachable
from tasks.options import REMOTE_READ_RETRY_DELAYS, REMOTE_READ_TASK


def counting_read(failures: list[Exception]) -> tuple[list[int], Task[[], str]]:
    """A read that raises the given errors in turn, then answers; and its attempt count."""
    attempts: list[int] = []

    # No delay between attempts in the test: the condition is what is under test.
    @task(name="read", **{**REMOTE_READ_TASK, "retry_delay_seconds": 0})
    def read() -> str:
        attempts.append(len(attempts) + 1)
        if failures:
            raise failures.pop(0)
        return "tags"

    return attempts, read


def test_a_read_retries_while_the_registry_does_not_answer_then_returns_its_answer() -> None:
    unreachable = RegistryUnreachable("reading the tags of m v1: registry unreachable")
    attempts, read = counting_read([unreachable, unreachable])

    @flow
    def reads() -> str:
        return read()

    assert reads() == "tags"
    assert attempts == [1, 2, 3]


def test_a_read_the_registry_refused_fails_at_once() -> None:
    attempts, read = counting_read([RegistryError("no registered model named 'm'")])

    @flow
    def reads() -> str:
        return read()

    state = reads(return_state=True)

    assert state.is_failed()
    assert attempts == [1]


def test_reads_give_up_after_the_last_delay() -> None:
    unreachable: list[Exception] = [RegistryUnreachable("registry unreachable") for _ in range(10)]
    attempts, read = counting_read(unreachable)

    @flow
    def reads() -> str:
        return read()

    state = reads(return_state=True)

    assert state.is_failed()
    assert len(attempts) == 1 + len(REMOTE_READ_RETRY_DELAYS)
