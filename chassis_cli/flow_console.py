"""A flow run by a `chassis` command fails as one `error:` line, not as Prefect's tracebacks.

Prefect's engine reports a failing task or flow run on its run loggers (`prefect.task_runs`,
`prefect.flow_runs`): "Task run failed with exception" and "Encountered exception during
execution" at ERROR with the whole traceback, then "Finished in state Failed(...)" - some
70 lines on the terminal before the command's own `error:` line names the same cause.
Those records reach the terminal through Prefect's console handler on the root logger, and
the Prefect API (the run's logs in the UI) through the API handler on the run loggers
themselves. So the filter below sits on the console handler only, and only while a command
runs a flow: the UI keeps every line, tracebacks included, and so does a worker's console.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
COMPLETED = "Finished in state Completed"


def reports_a_failure(record: logging.LogRecord) -> bool:
    """A run logger's record about the run failing: what the CLI's `error:` line says."""
    if not record.name.startswith(RUN_LOGGERS):
        return False
    if record.levelno >= logging.ERROR:
        return True
    message = record.getMessage()
    return message.startswith("Finished in state") and not message.startswith(COMPLETED)


class RunFailuresFilter(logging.Filter):
    """Drops the run failure reports from a console handler; lets everything else through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not reports_a_failure(record)


@contextmanager
def failures_reported_by_the_cli() -> Iterator[None]:
    """While a command runs its flow, Prefect's console shows progress, not failures.

    Call after `Context.prepare()`: importing Prefect configures its logging (its console
    handler exists from then on), and PREFECT_HOME must be set before that."""
    import prefect.main  # noqa: F401  (what configures Prefect's logging, as a flow import does)
    from prefect.logging.handlers import PrefectConsoleHandler

    quiet = RunFailuresFilter()
    consoles = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    for handler in consoles:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(quiet)
