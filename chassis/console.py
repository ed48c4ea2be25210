"""A run whose console reader is gone keeps running.

A Prefect process worker reads its flow runs' stdout through a pipe. When the worker dies
(kill -9, its pod evicted) the run lives on in its own session, but its next console log
line hits the broken pipe: Prefect's console handler prints through rich, whose
`Console.on_broken_pipe` raises SystemExit, which logging's error handling does not catch
(it is not an Exception). A rollout would then end as "interrupted" and retire a challenger
for no fault of its own. Here a console handler that meets a broken pipe goes quiet instead;
the run's logs still reach the Prefect API through its API handler.
"""

import logging
from typing import Any

_GUARDED = "_chassis_survives_lost_console"


def survive_lost_console() -> None:
    """Make every stream handler of the process's loggers stop, not exit, on a broken pipe."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not getattr(handler, _GUARDED, False):
                _guard(handler)


def _guard(handler: logging.StreamHandler[Any]) -> None:
    emit = handler.emit

    def guarded_emit(record: logging.LogRecord) -> None:
        try:
            emit(record)
        except SystemExit:
            # The reader of this stream is gone (see the module's docstring): stop writing
            # to it; every later record is dropped by level, not raised.
            handler.setLevel(logging.CRITICAL + 1)
        except BrokenPipeError:
            handler.setLevel(logging.CRITICAL + 1)

    handler.emit = guarded_emit
    setattr(handler, _GUARDED, True)
