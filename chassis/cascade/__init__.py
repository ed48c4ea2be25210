"""Cascade serving: a small classifier answers the rows it is confident about (calibrated
by temperature scaling), the full one the rest. See docs/architecture.md, "Cascade"."""
