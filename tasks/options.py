"""Options every Chassis task shares, defined once.

Remote reads retry only when the registry did not answer (`RegistryUnreachable`): a model
or version that does not exist, a digest that does not match or a bad spec fails at once,
because asking again cannot change the answer. Alias moves are not retried here: each is
one compare-and-set under the registry lock, and the rollout retries its own rollback
within its lease (see chassis/rollout/runner.py).
"""

from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from chassis.errors import RegistryUnreachable

# Specs, frames and torch modules are neither hashable inputs nor worth caching: every task
# recomputes from its inputs.
NO_CACHE_TASK: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}

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
