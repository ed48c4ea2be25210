"""What a failed MLflow call means for the user: one RegistryError naming what was asked."""

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from mlflow.exceptions import MlflowException

from chassis.errors import RegistryError, RegistryUnreachable

P = ParamSpec("P")
R = TypeVar("R")


def lookup_failed(error: Exception, missing: str) -> RegistryError:
    """What a failed registry read means: `missing` when the registry answered that the
    model or version does not exist; RegistryUnreachable when it did not answer (the gateway
    then retries and keeps serving what it verified, instead of reporting a missing model).
    """
    code = getattr(error, "error_code", "")
    if code == "RESOURCE_DOES_NOT_EXIST":
        return RegistryError(missing)
    text = str(error)
    # MLflow's REST client wraps connection failures as "API request to <url> failed with
    # exception ..."; a SQLite store that cannot be opened raises OperationalError text.
    if (
        code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")
        or "failed with exception" in text
        or "unable to open database" in text
        or "database is locked" in text
    ):
        return RegistryUnreachable(f"registry unreachable: {text.splitlines()[0][:300]}")
    return RegistryError(f"{missing} ({text.splitlines()[0][:300]})" if text else missing)


def call_failed(error: Exception, what: str) -> RegistryError:
    """An MLflow error that escaped a registry job, as one line naming what was asked:
    RegistryUnreachable when the registry did not answer, else RegistryError."""
    text = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    unreachable = lookup_failed(error, what)
    if isinstance(unreachable, RegistryUnreachable):
        return RegistryUnreachable(f"{what}: {unreachable}")
    return RegistryError(f"{what} failed: {text}")


def naming(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a `Registry` method so any MLflow error escaping it is wrapped by
    `call_failed`, and an unreachable registry is reported with what was asked; `what` is
    formatted with the method's arguments (e.g. "reading the tags of {name} v{version}")."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except (MlflowException, RegistryUnreachable) as error:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                asked = what.format(**bound.arguments)
                if isinstance(error, RegistryUnreachable):
                    # Said by a job without the model's name: the name is added here.
                    raise RegistryUnreachable(f"{asked}: {error}") from error
                raise call_failed(error, asked) from error

        return wrapped

    return decorate
