"""The `chassis` command. It sits above flows/: it prepares the environment, then runs them.

Heavy libraries (torch, Prefect, MLflow, Great Expectations) are imported inside commands,
so `chassis --help` answers in a fraction of a second.
"""
