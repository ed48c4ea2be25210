"""The image runs `prefect` and `mlflow` for the Prefect worker and the MLflow server
(deployments/kubernetes/): their options exist in the installed packages. Here rather than in
tests/unit because each CLI takes seconds to start; it starts no server."""

import subprocess
import sys
from pathlib import Path

from deployments.manifest_checks import load_base

BASE_MANIFESTS = load_base()


def test_the_prefect_and_mlflow_commands_the_manifests_run_take_their_options():
    """Each option the Prefect worker's and the MLflow server's args give is one that
    `prefect worker start --help` / `mlflow server --help` of the installed packages shows."""
    bin_dir = Path(sys.executable).parent
    checked = 0
    for manifest in BASE_MANIFESTS:
        if manifest.kind != "Deployment":
            continue
        for container in manifest.document["spec"]["template"]["spec"]["containers"]:
            args = [str(a) for a in container["args"]]
            if args[0] not in ("prefect", "mlflow"):
                continue
            words = [a for a in args[1:] if not a.startswith("-")]
            # The subcommand: the words before the first option.
            first_option = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
            subcommand = args[1:first_option]
            assert words[: len(subcommand)] == subcommand
            shown = subprocess.run(
                [str(bin_dir / args[0]), *subcommand, "--help"],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
            for option in (a for a in args if a.startswith("--")):
                assert option in shown, (manifest.where, option)
            checked += 1
    assert checked == 2  # the Prefect worker and the MLflow server
