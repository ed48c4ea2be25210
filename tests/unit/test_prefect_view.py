"""What Prefect's UI shows: table cells as written, stable artifact keys, the release
summary's order and aliases, run names and the run form's parameter descriptions."""

from pathlib import Path
from typing import get_args

import pytest
import yaml

from chassis.markdown import Markdown, cell, code, link, table
from flows.release import describe_aliases, describe_rollout
from flows.rollout import RolloutOutcome
from flows.run_form import described, parameter_descriptions
from flows.run_names import spec_label
from tasks.artifacts import ArtifactKind, artifact_key, table_row

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments" / "prefect.yaml"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (">= 0.9", "\\>= 0.9"),  # a blockquote otherwise
        ("<= 1.5x + 0 ms", "\\<= 1.5x + 0 ms"),  # an HTML tag's start otherwise
        ("-", "\\-"),  # an empty bullet list otherwise
        ("- a", "\\- a"),
        ("+0.02", "\\+0.02"),
        ("# 3", "\\# 3"),
        ("1. first", "1\\. first"),  # an ordered list otherwise
        ("1.0000", "1.0000"),  # a number stays as it is
        ("a | b", "a \\| b"),  # would split a markdown table's row
        ("recall_class_9", "recall_class_9"),  # no emphasis inside a word
        ("_private_", "\\_private\\_"),
        ("[7]", "\\[7\\]"),
        ("two\nlines", "two lines"),
        ("    indented", "indented"),  # a code block otherwise
        ("canary 25%", "canary 25%"),
    ],
)
def test_a_cell_renders_as_the_text_put_in_it(text, shown):
    assert cell(text) == shown


def test_markdown_on_purpose_is_kept_and_link_text_is_escaped():
    assert cell(Markdown("**drift**")) == "**drift**"
    assert link("[beta] v2", "http://x/#/m") == "[\\[beta\\] v2](http://x/#/m)"
    assert code("ab`c|d") == "`ab'c/d`"


def test_a_table_escapes_every_cell_and_keeps_its_shape():
    rendered = table(["check", "threshold"], [("agreement", ">= 0.95"), ("errors", "a|b")])
    assert rendered.splitlines() == [
        "| check | threshold |",
        "|---|---|",
        "| agreement | \\>= 0.95 |",
        "| errors | a\\|b |",
    ]


def test_table_artifact_rows_escape_text_and_keep_numbers():
    row = table_row({"threshold": ">= 0.9", "score": 0.5, "drifted": True})
    assert row == {"threshold": "\\>= 0.9", "score": 0.5, "drifted": True}


def test_artifact_keys_are_one_per_model_and_kind_without_a_version():
    assert artifact_key("gates", "digits-mlp") == "gates-digits-mlp"
    assert artifact_key("rollout-decision", "My_Model.v2") == "rollout-decision-my-model-v2"
    keys = {artifact_key(kind, "digits-mlp") for kind in get_args(ArtifactKind)}
    assert len(keys) == len(get_args(ArtifactKind))  # no two kinds share a key
    for key in keys:  # Prefect's rule: lowercase letters, digits, dashes
        assert key == key.lower() and all(ch.isalnum() or ch == "-" for ch in key), key


def test_the_release_summary_lists_steps_in_the_order_they_ran():
    order = ["shadow", "canary 10%", "canary 25%", "canary 50%", "canary 100%"]
    checks = ["error rate limit", "agreement with stable"]
    staged = RolloutOutcome(
        model_name="m",
        version=3,
        strategy="canary",
        promoted=True,
        steps=[{"step": s, "check": c} for s in order for c in checks],
        traffic={},
    )
    assert describe_rollout(staged) == (
        "canary: promoted to champion after shadow, canary 10%, canary 25%, canary 50%, canary 100%"
    )


def test_the_release_summary_says_the_aliases_the_release_ended_with():
    assert describe_aliases({"champion": 3, "previous": 1}, 3) == "v3 is @champion (@previous: v1)"
    assert describe_aliases({"champion": 1, "challenger": 3}, 3) == (
        "v3 is @challenger (@champion: v1)"
    )
    assert describe_aliases({"champion": 1}, 3) == "v3 has no alias (@champion: v1)"


def test_spec_labels_are_what_people_call_the_spec():
    assert spec_label("chassis.specs.digits:spec") == "digits"
    assert spec_label("tests.fixtures.specs:good") == "good"
    assert spec_label("churn") == "churn"


def deployed_flows() -> list[tuple[str, str]]:
    document = yaml.safe_load(DEPLOYMENTS.read_text())
    return [(d["name"], d["entrypoint"]) for d in document["deployments"]]


@pytest.mark.parametrize(("name", "entrypoint"), deployed_flows(), ids=lambda v: str(v))
def test_prefect_deploy_gives_every_parameter_its_description(name, entrypoint, monkeypatch):
    """As `prefect deploy` builds the schema the run form shows (cli/deploy/_core.py):
    parameter_schema of the flow loaded from its entrypoint."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    monkeypatch.chdir(DEPLOYMENTS.parents[1])
    flow = load_flow_from_entrypoint(entrypoint)
    properties = parameter_schema(flow).model_dump_for_openapi()["properties"]
    written = parameter_descriptions(flow.fn)
    assert set(written) == set(properties), f"{name}: a parameter without a description"
    for parameter, text in written.items():
        assert properties[parameter]["description"] == text, (name, parameter)
    # The flow's own description (its page in the UI) stays the docstring as written.
    assert flow.description and "Args:" not in flow.description


def test_a_flow_with_its_own_args_section_is_refused():
    from typing import Annotated

    from prefect import flow
    from pydantic import Field

    def twice(x: Annotated[int, Field(description="a number")]) -> int:
        """Doubles.

        Args:
            x: written twice
        """
        return 2 * x

    with pytest.raises(ValueError, match="descriptions in the annotations only"):
        described(flow(twice))
