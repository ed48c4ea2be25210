"""The run form of a deployed flow, as the Prefect UI reads it from the API."""

from prefect import get_client

from flows.release import release
from flows.run_form import parameter_descriptions


def test_the_deployed_release_form_describes_every_parameter():
    # The same schema `prefect deploy` and `serve` send: parameter_schema of the flow.
    deployment_id = release.to_deployment(name="run-form-check").apply()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
        client.delete_deployment(deployment_id)
    properties = deployment.parameter_openapi_schema["properties"]
    written = parameter_descriptions(release.fn)
    assert set(written) == set(properties) and len(written) >= 9
    assert {name: p.get("description") for name, p in properties.items()} == written
    # A policy's own fields keep theirs (the form's nested inputs).
    policy = deployment.parameter_openapi_schema["definitions"]["RolloutPolicy"]
    assert all(field.get("description") for field in policy["properties"].values())
