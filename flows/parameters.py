"""Flow parameters many flows share, in a module of their own: a flow that imports one
does not import another flow's tasks (the diagnosis starts in seconds, without torch)."""

from typing import Annotated

from pydantic import Field

ModelParameter = Annotated[
    str, Field(min_length=1, description="Registered-model name, e.g. digits-mlp.")
]
VersionParameter = Annotated[int, Field(ge=1, description="Model version number.")]
