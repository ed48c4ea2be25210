"""Staged rollout: canary steps or blue-green, each judged by an analysis of live traffic."""
