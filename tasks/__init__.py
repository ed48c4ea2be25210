"""Prefect tasks. Each wraps one core function of `chassis` with logging and artifacts."""
