"""What a model does with its inputs: the one definition of a model's task.

A spec declares it (`ModelSpec.task`), every registered version records it (tag
`TAG_TASK` in `registry/tags.py`), and everything that judges, compresses, serves or
watches a version reads it back from there with `task_of`. A version registered before the
tag existed has none and is a classifier, so existing registries keep working.

The builder contract follows from it: `build_model(n_features, n_outputs)` returns a module
mapping float32 `[batch, n_features]` to `[batch, n_outputs]`, where `n_outputs` is the
number of classes for a classifier (logits) and 1 for a regressor (the predicted value).
"""

import typing
from collections.abc import Mapping
from typing import Literal

from chassis.errors import SpecError

# A later "embedding" task extends this Literal; every tuple below is derived from it.
Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = typing.get_args(Task)
CLASSIFICATION: Task = "classification"
REGRESSION: Task = "regression"
DEFAULT_TASK: Task = CLASSIFICATION


def parse_task(value: object, where: str) -> Task:
    """`value` as a Task; SpecError naming `where` and the known tasks otherwise."""
    for task in TASKS:
        if value == task:
            return task
    raise SpecError(f"{where}: unknown task {value!r}; choose one of {', '.join(TASKS)}")


def task_of(tags: Mapping[str, str]) -> Task:
    """The task a registered version records; a version without the tag is a classifier.
    An unknown value (written by a newer Chassis) is refused, never guessed."""
    # Imported here: the registry package imports MLflow, and a spec imports this module.
    from chassis.registry.tags import TAG_TASK

    value = tags.get(TAG_TASK)
    if value is None:
        return DEFAULT_TASK
    return parse_task(value, f"version tag {TAG_TASK}")


def output_width(task: Task, n_classes: int | None) -> int:
    """How many outputs a model of `task` has: its classes, or one predicted value."""
    if task == REGRESSION:
        return 1
    if n_classes is None:
        raise SpecError("a classifier's output width needs its number of classes")
    return n_classes
