"""The drift check's and the rollout's plots: what each figure draws (read from the figure's
axes, not its pixels), for one check or thirty, 1 feature or 200, one step or ten, and a
rollback mid-way; and that what is saved is a PNG."""

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.patches import Rectangle

from chassis.drift import ColumnDrift
from chassis.drift_plot import (
    FEATURE_GID,
    TOP_FEATURES,
    CheckPoint,
    check_of_record,
    drift_figure,
    top_features,
)
from chassis.figures import save_png
from chassis.markdown import PlotLinks
from chassis.mlflow_links import MlflowLinks
from chassis.rollout.analysis import analyze_step
from chassis.rollout.counts import VersionCounts
from chassis.rollout.plot import drawn_steps, rollout_figure
from chassis.rollout.policy import RolloutPolicy
from chassis.tracking import MonitoringRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START = datetime(2026, 12, 1, tzinfo=UTC)


def checks(count: int, features: int) -> list[CheckPoint]:
    """`count` checks six hours apart; feature j's strength grows with j and the check."""
    made = []
    for i in range(count):
        strengths = {f"f{j}": (j + 1) * (i + 1) / (features * count) * 2 for j in range(features)}
        share = sum(s >= 1 for s in strengths.values()) / features
        verdict = "drift" if share >= 0.5 else "no-drift"
        made.append(CheckPoint(START + timedelta(hours=6 * i), verdict, share, 0.5, strengths))
    return made


def feature_lines(figure):
    return [line for line in figure.axes[1].get_lines() if line.get_gid() == FEATURE_GID]


def test_one_check_of_one_feature_is_a_png_with_one_line_of_one_point(tmp_path):
    figure = drift_figure("m", checks(1, 1))
    lines = feature_lines(figure)
    assert [line.get_label() for line in lines] == ["f0"]
    assert len(np.asarray(lines[0].get_xdata())) == 1
    path = save_png(figure, tmp_path / "drift.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    # One check is not spread over years: the time axis spans hours.
    low, high = figure.axes[1].get_xlim()
    assert high - low <= 1  # matplotlib dates are in days


def test_two_hundred_features_draw_the_most_drifted_ten_and_say_so():
    made = checks(30, 200)
    figure = drift_figure("m", made)
    lines = feature_lines(figure)
    assert len(lines) == TOP_FEATURES
    assert [line.get_label() for line in lines] == [f"f{j}" for j in range(199, 189, -1)]
    assert all(len(np.asarray(line.get_xdata())) == 30 for line in lines)
    assert "the 10 most drifted of 200 features" in figure.axes[1].get_title(loc="left")
    # The share panel: one point per check, drift and no drift each in its own series.
    points = sum(len(np.asarray(c.get_offsets())) for c in figure.axes[0].collections)
    assert points == 30
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert {"drift", "no drift"} <= set(labels)


def test_the_most_drifted_feature_of_the_latest_check_comes_first():
    older = CheckPoint(START, "drift", 1.0, 0.5, {"a": 9.0, "b": 2.0, "c": 0.1})
    latest = CheckPoint(START + timedelta(hours=1), "no-drift", 0.0, 0.5, {"a": 0.2, "b": 0.5})
    # "c" is not in the latest check; "b" moved most now, "a" before.
    assert top_features([older, latest], limit=2) == ["b", "a"]


def test_a_feature_missing_from_an_earlier_check_is_a_gap_not_a_zero():
    older = CheckPoint(START, "no-drift", 0.0, 0.5, {})
    latest = CheckPoint(START + timedelta(hours=1), "drift", 1.0, 0.5, {"new": 3.0})
    (line,) = feature_lines(drift_figure("m", [older, latest]))
    values = list(np.asarray(line.get_ydata()))
    assert math.isnan(values[0]) and values[1] == 3.0


def test_drift_strength_is_one_at_the_threshold_for_a_p_value_and_a_distance():
    at_p = ColumnDrift("x", "K-S p_value", 0.05, 0.05, False)
    assert at_p.strength == pytest.approx(1.0)
    assert ColumnDrift("x", "K-S p_value", 0.05, 1e-10, True).strength > 1
    assert ColumnDrift("x", "K-S p_value", 0.05, 0.5, False).strength < 1
    assert math.isfinite(ColumnDrift("x", "K-S p_value", 0.05, 0.0, True).strength)
    assert ColumnDrift("x", "Wasserstein distance (normed)", 0.1, 0.25, True).strength == 2.5


def test_an_earlier_check_is_read_back_from_its_run_and_a_foreign_run_is_skipped():
    columns = [
        {"column": "x", "method": "K-S p_value", "threshold": 0.05, "score": 0.05,
         "drifted": False, "counted": True},
        {"column": "len", "method": "K-S p_value", "threshold": 0.05, "score": 0.0,
         "drifted": True, "counted": False},
    ]  # fmt: skip
    record = MonitoringRecord(
        "r", START, {"drifted_share": 0.0}, {"verdict": "no-drift", "drift_share": "0.5"}, columns
    )
    check = check_of_record(record)
    assert check is not None
    assert (check.verdict, check.drift_share_needed) == ("no-drift", 0.5)
    assert check.strengths == {"x": pytest.approx(1.0)}  # a descriptor is not in the verdict
    # An older check without per-column results still has its share.
    assert check_of_record(replace(record, columns=None)).strengths == {}  # type: ignore[union-attr]
    assert check_of_record(replace(record, params={})) is None


def test_no_checks_is_refused():
    with pytest.raises(ValueError, match="at least one check"):
        drift_figure("m", [])


BOUNDS = tuple(0.0001 * 1.5**i for i in range(30))


def counts(n: int, errors: int = 0, slower: int = 0) -> VersionCounts:
    buckets = [0] * (len(BOUNDS) + 1)
    for i in range(n):
        buckets[min(len(BOUNDS), 5 + slower + i % 7)] += 1
    histogram = tuple(buckets)
    return VersionCounts(n, errors, n, n, BOUNDS, histogram, histogram)


def step(label: str, share: float, slower: int = 0):
    analysis = analyze_step(label, counts(2000, slower=slower), counts(4000, 2), RolloutPolicy())
    return replace(analysis, share_percent=share)


def bars(axes) -> list[Rectangle]:
    return [patch for patch in axes.patches if isinstance(patch, Rectangle)]


def errorbars(axes) -> list[ErrorbarContainer]:
    return [c for c in axes.containers if isinstance(c, ErrorbarContainer)]


def series(axes) -> list[str]:
    return axes.get_legend_handles_labels()[1]


def test_a_promoted_canary_draws_each_step_with_both_versions_and_the_limits():
    analyses = [step("shadow", 0), step("canary 50%", 50), step("canary 100%", 100)]
    figure = rollout_figure("t", analyses, RolloutPolicy())
    share, latency, budget, errors = figure.axes[:4]
    assert [t.get_text() for t in errors.get_xticklabels()] == [a.step for a in analyses]
    assert [bar.get_height() for bar in bars(share)] == [0, 50, 100]
    assert series(latency) == ["stable p50", "stable p90", "candidate p50", "candidate p90"]
    assert set(series(budget)) == {"candidate p99", "budget (50 ms)"}
    assert set(series(errors)) == {"stable", "candidate", "limit (1%)"}
    # Every step has a latency estimate for each series, in milliseconds.
    for container in errorbars(latency):
        values = np.asarray(container.lines[0].get_ydata())
        assert len(values) == 3 and all(0 < v < 100 for v in values)


def test_a_rollback_mid_way_draws_the_steps_that_ran_and_the_failed_one_once():
    judged = step("canary 25%", 25, slower=4)
    ruled = replace(judged, verdict="fail", reason="share below the minimum")
    analyses = [step("shadow", 0), step("canary 5%", 5), judged, ruled]
    assert [s.verdict for s in drawn_steps(analyses)][-1] == "fail"
    figure = rollout_figure("t", analyses, RolloutPolicy())
    assert [t.get_text() for t in figure.axes[3].get_xticklabels()] == [
        "shadow",
        "canary 5%",
        "canary 25%",
    ]
    assert len(figure.axes[0].patches) == 3
    assert figure.axes[0].texts[-1].get_text() == "25%\nfail"


@pytest.mark.parametrize("count", [1, 10])
def test_one_step_or_ten_each_have_a_bar_and_a_label(count):
    shares = [100.0] if count == 1 else [1, 2, 5, 10, 20, 30, 50, 70, 90, 100]
    analyses = [step(f"canary {s:g}%", s) for s in shares]
    figure = rollout_figure("t", analyses, RolloutPolicy())
    assert len(figure.axes[0].patches) == count
    assert len(figure.axes[3].get_xticklabels()) == count


def test_a_rollout_figure_saves_as_a_png(tmp_path):
    figure = rollout_figure("t", [step("canary 100%", 100)], RolloutPolicy())
    assert save_png(figure, tmp_path / "r.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_step_without_samples_is_a_gap_not_a_failure():
    empty = analyze_step("canary 5%", VersionCounts(), VersionCounts(), RolloutPolicy())
    figure = rollout_figure("t", [replace(empty, share_percent=5)], RolloutPolicy())
    for container in errorbars(figure.axes[1]):
        assert all(math.isnan(v) for v in np.asarray(container.lines[0].get_ydata()))


def test_the_image_is_embedded_by_the_tracking_servers_artifact_route():
    url = MlflowLinks("http://127.0.0.1:5100").artifact_file("abc123", "drift/a b.png")
    assert url == "http://127.0.0.1:5100/get-artifact?path=drift/a%20b.png&run_uuid=abc123"
    shown = PlotLinks(url, "http://127.0.0.1:5100/#/page").markdown("Drift of m_1")
    assert shown.startswith(f"![Drift of m_1]({url})")
    assert "[The plot in MLflow](http://127.0.0.1:5100/#/page)" in shown
