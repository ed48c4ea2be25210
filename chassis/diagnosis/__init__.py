"""Diagnosis without a person: the troubleshooting tree the `diagnose` flow walks."""
