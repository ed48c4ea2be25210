"""Flow run names that say what ran on which model and version.

Prefect names a run with two random words ("simple-puffin") unless the flow gives a
`flow_run_name`: a template of its parameters ("rollout {model_name} v{version}"), or a
function of them. A release knows its model and version only after training, so it is
renamed then ("release digits" -> "release digits-mlp v3").
"""

from collections.abc import Callable

from prefect import get_client
from prefect.context import FlowRunContext
from prefect.runtime import flow_run


def spec_label(reference: str) -> str:
    """A spec reference as people call it: `chassis.specs.digits:spec` -> `digits`,
    `my.models:churn` -> `churn`."""
    module, _, attribute = reference.partition(":")
    return attribute if attribute and attribute != "spec" else module.rpartition(".")[2]


def by_spec(verb: str) -> Callable[[], str]:
    """A flow_run_name for flows that take a `spec`: "<verb> <spec label>"."""

    def name() -> str:
        spec = flow_run.parameters.get("spec")
        return f"{verb} {spec_label(spec)}" if isinstance(spec, str) and spec else verb

    return name


def by_models(verb: str) -> Callable[[], str]:
    """A flow_run_name for flows that take `model_names` (a list, or one name)."""

    def name() -> str:
        names = flow_run.parameters.get("model_names")
        shown = [names] if isinstance(names, str) else list(names or [])
        return f"{verb} {', '.join(map(str, shown))}".strip()

    return name


def rename_run(name: str) -> None:
    """Rename the flow run in progress (nothing outside a flow run): on the server, and in
    the run's context, so that its later log lines carry the new name too (Prefect's own
    start and end lines keep the first one)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_name(context.flow_run.id, name)
    context.flow_run.name = name
