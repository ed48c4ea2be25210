"""The run form of a deployed flow, as the Prefect UI reads it from the API."""

from uuid import UUID

from prefect import get_client
from prefect.deployments.runner import RunnerDeployment

from flows.release import release
from flows.run_form import parameter_descriptions


def test_the_deployed_release_form_describes_every_parameter():
    # The same schema `prefect deploy` and `serve` send: parameter_schema of the flow.
    deployment = release.to_deployment(name="run-form-check")
    assert isinstance(deployment, RunnerDeployment)  # called from sync code: not awaitable
    deployment_id = deployment.apply()
    assert isinstance(deployment_id, UUID)
    with get_client(sync_client=True) as client:
        schema = client.read_deployment(deployment_id).parameter_openapi_schema
        client.delete_deployment(deployment_id)
    assert schema is not None
    properties = schema["properties"]
    written = parameter_descriptions(release.fn)
    assert set(written) == set(properties) and len(written) >= 9
    assert {name: p.get("description") for name, p in properties.items()} == written
    # A policy's own fields keep theirs (the form's nested inputs).
    policy = schema["definitions"]["RolloutPolicy"]
    assert all(field.get("description") for field in policy["properties"].values())
