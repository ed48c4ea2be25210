"""Options every Chassis task shares, defined once.

Remote reads retry only when the registry did not answer (`RegistryUnreachable`): a model
or version that does not exist, a digest that does not match or a bad spec fails at once,
because asking again cannot change the answer. Alias moves are not retried here: each is
one compare-and-set under the registry lock, and the rollout retries its own rollback
within its lease (see chassis/rollout/runner.py).
"""

from collections.abc import Callable
from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.runtime import task_run as current_task_run

from chassis import progress
from chassis.errors import RegistryUnreachable


def _announced(name: str) -> str:
    # Prefect resolves a task run's name as the run starts, after its parameters: the one
    # quiet in-process signal that a step began (its "created" line is at debug level; an
    # on_running hook logs two lines per task), so the CLI's status line says what runs
    # now rather than what last logged.
    progress.step(name)
    return name


def named_for_its_model(parameters: dict[str, Any]) -> str:
    """A task run named for what it works on, e.g. "judge-gates digits-mlp v3" (Prefect's
    default is "judge-gates-3fa", a random suffix that says nothing)."""
    task_name = str(current_task_run.task_name or "task")
    model = parameters.get("model_name") or parameters.get("model")
    if not isinstance(model, str):
        model = getattr(parameters.get("spec"), "name", None)
    version = parameters.get("version")
    subject = f" {model}" if isinstance(model, str) and model else ""
    if subject and isinstance(version, int) and not isinstance(version, bool):
        subject += f" v{version}"
    return _announced(task_name + subject)


def named(template: str) -> Callable[[dict[str, Any]], str]:
    """A task run name from a template of the task's parameters ("{label} {candidate.model}")."""

    def name(parameters: dict[str, Any]) -> str:
        return _announced(template.format(**parameters))

    return name


# Specs, frames and torch modules are neither hashable inputs nor worth caching: every task
# recomputes from its inputs.
NO_CACHE_TASK: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "task_run_name": named_for_its_model,
}

# Seconds between attempts: a registry restart or a dropped connection is over in seconds;
# MLflow's own HTTP retries (capped by Chassis in the gateway and the rollout) run inside
# each attempt.
REMOTE_READ_RETRY_DELAYS = [2, 5, 10]


def registry_did_not_answer(task: object, task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's retry condition: the attempt failed because the registry was unreachable."""
    return isinstance(state.data, RegistryUnreachable)


REMOTE_READ_TASK: dict[str, Any] = {
    **NO_CACHE_TASK,
    "retries": len(REMOTE_READ_RETRY_DELAYS),
    "retry_delay_seconds": REMOTE_READ_RETRY_DELAYS,
    "retry_condition_fn": registry_did_not_answer,
}
