"""Prefect flows: thin recipes of task calls and decisions."""
