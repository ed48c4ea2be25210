"""Chassis: take a trained PyTorch model to production safely and keep it healthy there.

The core library. Nothing in this package imports Prefect, and nothing runs on import:
settings, tracking URIs and folders are built at the entry points (the CLI, a flow run).
"""

__version__ = "0.1.0"
