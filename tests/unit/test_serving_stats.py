"""A version's window statistics: counts, rates, exact percentiles, a bounded window."""

import pytest

from chassis.serving.stats import WINDOW, VersionStats


def test_an_empty_window_reports_zeros_and_full_agreement():
    assert VersionStats().summary() == {
        "requests": 0,
        "errors": 0,
        "error_rate": 0.0,
        "p50_ms": 0.0,
        "p99_ms": 0.0,
        "shadow_compared": 0,
        "shadow_agreement": 1.0,
    }


def test_rates_are_counts_over_counts():
    stats = VersionStats(requests=200, errors=3, shadow_compared=80, shadow_agreed=76)
    summary = stats.summary()
    assert summary["error_rate"] == pytest.approx(0.015)
    assert summary["shadow_agreement"] == pytest.approx(0.95)


def test_percentiles_are_exact_over_the_window():
    stats = VersionStats()
    stats.latencies_ms.extend(float(ms) for ms in range(1, 101))  # 1..100 ms
    summary = stats.summary()
    assert summary["p50_ms"] == pytest.approx(50.5)  # linear interpolation
    assert summary["p99_ms"] == pytest.approx(99.01)


def test_one_slow_request_moves_p99_not_p50():
    stats = VersionStats()
    stats.latencies_ms.extend([2.0] * 999 + [900.0])
    summary = stats.summary()
    assert summary["p50_ms"] == 2.0
    assert summary["p99_ms"] == 2.0  # 1 in 1000 is beyond the 99th percentile
    stats.latencies_ms.extend([900.0] * 20)
    assert stats.summary()["p99_ms"] == 900.0


def test_only_the_latest_window_of_latencies_counts():
    stats = VersionStats()
    stats.latencies_ms.extend([1000.0] * 5000 + [1.0] * WINDOW)
    assert len(stats.latencies_ms) == WINDOW
    assert stats.summary()["p99_ms"] == 1.0
