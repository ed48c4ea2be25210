"""Parameter descriptions in the run form of the Prefect UI.

Prefect builds a flow's parameter schema (the run form of its deployments, by `prefect
deploy` and by `serve`/`to_deployment` alike) from the signature, and takes each
parameter's description from a Google-style `Args:` section of the docstring or from a
pydantic `Field` given as the default value. The description of an
`Annotated[..., Field(description=...)]` parameter is dropped: Prefect's own Field for the
parameter sets `description=None` over it (PrefectHQ/prefect#13912). Chassis writes each
description once, in the annotation (the CLI and the tests read them there too);
`described` copies them into the flow's docstring as the `Args:` section Prefect reads.
"""

import inspect
from typing import Annotated, Any, ParamSpec, TypeVar, get_origin

from prefect import Flow
from prefect.utilities.callables import parameter_schema
from pydantic.fields import FieldInfo

P = ParamSpec("P")
R = TypeVar("R")


def parameter_descriptions(fn: Any) -> dict[str, str]:
    """Each parameter's description from its `Annotated[..., Field(description=...)]`, as
    one line."""
    found: dict[str, str] = {}
    for name, parameter in inspect.signature(fn, eval_str=True).parameters.items():
        annotation = parameter.annotation
        if get_origin(annotation) is not Annotated:
            continue
        for meta in annotation.__metadata__:
            if isinstance(meta, FieldInfo) and meta.description:
                found[name] = " ".join(meta.description.split())
    return found


def args_section(descriptions: dict[str, str]) -> str:
    lines = ["Args:"] + [f"    {name}: {text}" for name, text in descriptions.items()]
    return "\n".join(lines)


def described(flow: Flow[P, R]) -> Flow[P, R]:
    """The flow with its parameters' descriptions where Prefect reads them. Apply it above
    `@flow`: the flow's own description (its docstring as written, shown on the flow's
    page) is taken when the flow is made and stays without the `Args:` section."""
    descriptions = parameter_descriptions(flow.fn)
    if descriptions:
        doc = inspect.cleandoc(flow.__doc__ or "")
        if "\nArgs:" in f"\n{doc}":
            raise ValueError(f"flow {flow.name}: write descriptions in the annotations only")
        flow.__doc__ = f"{doc}\n\n{args_section(descriptions)}".strip()
        # Read by flow.to_deployment/serve through parameter_schema(flow) as well.
        flow.parameters = parameter_schema(flow)
    return flow
