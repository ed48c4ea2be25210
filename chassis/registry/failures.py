"""What a failed MLflow call means for the user: one RegistryError naming what was asked."""

from chassis.errors import RegistryError, RegistryUnreachable


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
