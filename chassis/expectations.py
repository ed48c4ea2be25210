"""The one module that drives Great Expectations: loads JSON suites, validates frames.

Great Expectations 1.x logs and drops an expectation whose type it does not know, and column
checks pass on an empty batch. So a suite is refused unless every expectation in its file
loaded, and suites are expected to carry a row-count floor.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from chassis.errors import DataValidationError, ExpectationSuiteError
from chassis.markdown import table

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd


@dataclass(frozen=True)
class ExpectationResult:
    expectation: str
    column: str | None
    success: bool
    observed: str
    detail: str

    def describe(self) -> str:
        return f"{self.expectation}({self.column or 'table'}) observed {self.observed}, " + (
            f"expected {self.detail}"
        )


@dataclass(frozen=True)
class SuiteResult:
    suite_name: str
    success: bool
    results: tuple[ExpectationResult, ...]

    @property
    def failures(self) -> tuple[ExpectationResult, ...]:
        return tuple(r for r in self.results if not r.success)

    def to_markdown(self, title: str) -> str:
        verdict = "passed" if self.success else f"FAILED ({len(self.failures)} failing)"
        lines = [
            f"# {title}",
            "",
            f"Suite `{self.suite_name}`: **{verdict}**, {len(self.results)} expectations.",
            "",
        ]
        # Failures first: they are what a reader came for.
        ordered = sorted(self.results, key=lambda r: r.success)
        rows = [
            (r.expectation, r.column or "", "pass" if r.success else "FAIL", r.observed, r.detail)
            for r in ordered
        ]
        lines.append(table(["expectation", "column", "result", "observed", "expected"], rows))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite_name,
            "success": self.success,
            "results": [r.__dict__ for r in self.results],
        }


def resolve_suite_path(reference: str, expectations_dir: Path) -> Path:
    """A spec's suite file: an absolute reference as is, a relative one in the project's
    expectations folder (CHASSIS_EXPECTATIONS_DIR, ./expectations of the working directory)."""
    path = Path(reference)
    if not path.is_absolute():
        path = expectations_dir / path
    if not path.is_file():
        where = "" if Path(reference).is_absolute() else " (CHASSIS_EXPECTATIONS_DIR)"
        raise ExpectationSuiteError(
            f"expectation suite {reference!r} not found (looked at {path}{where})"
        )
    return path


def read_suite_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ExpectationSuiteError(
            f"expectation suite {path} is not readable JSON: {error}"
        ) from error
    if not isinstance(document, dict) or not isinstance(document.get("expectations"), list):
        raise ExpectationSuiteError(f"expectation suite {path} has no 'expectations' list")
    return cast(dict[str, Any], document)  # a JSON object


def build_suite(document: dict[str, Any], origin: str) -> "gx.ExpectationSuite":
    import great_expectations as gx

    declared = document["expectations"]
    # GX logs the dropped expectation at ERROR with a traceback; the count check below turns
    # it into one clear error instead.
    suite_logger = logging.getLogger("great_expectations.core.expectation_suite")
    previous_level = suite_logger.level
    suite_logger.setLevel(logging.CRITICAL)
    try:
        suite = gx.ExpectationSuite(name=document.get("name") or origin, expectations=declared)
    finally:
        suite_logger.setLevel(previous_level)
    if len(suite.expectations) != len(declared):
        loaded = {e.expectation_type for e in suite.expectations}
        dropped = sorted({str(e.get("type")) for e in declared} - loaded) or ["(invalid kwargs)"]
        raise ExpectationSuiteError(
            f"expectation suite {origin}: Great Expectations loaded {len(suite.expectations)} "
            f"of {len(declared)} expectations; not understood: {', '.join(dropped)}"
        )
    return suite


def load_suite(path: Path) -> "gx.ExpectationSuite":
    return build_suite(read_suite_file(path), str(path))


def validate_frame(frame: "pd.DataFrame", suite: "gx.ExpectationSuite") -> SuiteResult:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from chassis.quiet import quiet_great_expectations

    quiet_great_expectations()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("chassis")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    outcome = batch.validate(suite)
    results = tuple(_summarize(r) for r in outcome.results)
    return SuiteResult(suite.name, bool(outcome.success), results)


def check_frame(frame: "pd.DataFrame", suite: "gx.ExpectationSuite", what: str) -> SuiteResult:
    """Validate and raise DataValidationError naming every failing expectation."""
    return raise_for_failures(validate_frame(frame, suite), what)


def describe_failures(result: SuiteResult, what: str, limit: int | None = None) -> str:
    """`what failed suite 'name' (k of n expectations): each failing one, observed, expected`;
    with `limit`, only the first `limit` failures are spelled out."""
    shown = result.failures if limit is None else result.failures[:limit]
    failing = "; ".join(r.describe() for r in shown)
    more = len(result.failures) - len(shown)
    return (
        f"{what} failed suite {result.suite_name!r} "
        f"({len(result.failures)} of {len(result.results)} expectations): {failing}"
        + (f"; and {more} more" if more else "")
    )


def raise_for_failures(result: SuiteResult, what: str) -> SuiteResult:
    if not result.success:
        raise DataValidationError(describe_failures(result, what))
    return result


IGNORED_KWARGS = {"batch_id", "column", "result_format", "catch_exceptions"}


def _summarize(result: Any) -> ExpectationResult:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    details: dict[str, Any] = result.result or {}

    if "observed_value" in details:
        observed = _short(details["observed_value"])
    elif "unexpected_count" in details:
        observed = (
            f"{details.get('unexpected_count')} unexpected "
            f"({details.get('unexpected_percent') or 0:.3g}%)"
        )
        sample = details.get("partial_unexpected_list")
        if sample:
            observed += f", e.g. {_short(sample[:3])}"
    elif result.exception_info and result.exception_info.get("raised_exception"):
        observed = "error: " + _short(result.exception_info.get("exception_message"))
    else:
        observed = ""
    expected = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items() if k not in IGNORED_KWARGS)
    return ExpectationResult(
        expectation=config.type,
        column=kwargs.get("column"),
        success=bool(result.success),
        observed=observed,
        detail=expected,
    )


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
