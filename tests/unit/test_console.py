"""A flow run whose stdout reader died keeps running (chassis/console.py)."""

import logging
import os

import pytest
from prefect.logging.handlers import PrefectConsoleHandler

from chassis.console import survive_lost_console


def broken_pipe_stream():
    """A stream whose reader is gone, as a flow run's stdout after its worker was killed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return os.fdopen(write_end, "w")


def test_prefects_console_handler_on_a_broken_pipe_raises_systemexit_unguarded():
    """What the guard is for: without it, the first log line ends the process."""
    stream = broken_pipe_stream()
    logger = logging.getLogger("chassis-test-unguarded")
    logger.propagate = False
    logger.addHandler(PrefectConsoleHandler(stream=stream))
    with pytest.raises(SystemExit):
        logger.warning("a step's verdict")


def test_a_guarded_console_handler_goes_quiet_and_the_run_goes_on():
    stream = broken_pipe_stream()
    logger = logging.getLogger("chassis-test-guarded")
    logger.propagate = False
    handler = PrefectConsoleHandler(stream=stream)
    logger.addHandler(handler)
    survive_lost_console()
    logger.warning("a step's verdict")  # no SystemExit
    logger.warning("the next one")
    assert handler.level > logging.CRITICAL  # it stopped writing to the dead pipe
