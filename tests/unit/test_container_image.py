"""The container image recipe (Dockerfile) keeps its rules, checked by reading it: docker and
the base images are not available on the development machine, so the image is never built
here. Its entrypoint script runs here, on stub programs and on the installed CLI."""

import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from deployments.manifest_checks import SECRET_NAME, known_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "deployments" / "docker" / "entrypoint.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        found.append((word.upper(), rest.strip()))
    return found


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (ARGs before the first FROM are left out)."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


STAGES = stages(DOCKERFILE.read_text())
RUNTIME = STAGES[-1]


def test_the_image_is_built_in_two_stages_and_the_runtime_copies_the_venv_from_the_builder():
    names = [re.search(r"\bAS (\w+)$", s[0][1], re.IGNORECASE) for s in STAGES]
    assert [n.group(1) if n else None for n in names] == ["builder", "runtime"]
    copies = [args for word, args in RUNTIME if word == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies
    # The runtime stage installs nothing itself: no pip, no compilers.
    assert not any(word == "RUN" and "pip" in args for word, args in RUNTIME)


def test_torch_comes_from_the_cpu_wheel_index_at_the_projects_pin():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_pin = next(p for p in pins if p.startswith("torch=="))
    builder_runs = [args for word, args in STAGES[0] if word == "RUN"]
    torch_runs = [r for r in builder_runs if "torch" in r]
    assert len(torch_runs) == 1, torch_runs
    assert f"--index-url {CPU_INDEX}" in torch_runs[0]
    assert f'"{torch_pin}"' in torch_runs[0]
    # torch is installed before the project, so the project's pin finds it satisfied.
    assert builder_runs.index(torch_runs[0]) < next(
        i for i, r in enumerate(builder_runs) if "pip install -e" in r
    )


def test_the_runtime_runs_as_a_fixed_non_root_uid_before_its_entrypoint():
    users = [args for word, args in RUNTIME if word == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    words = [word for word, _ in RUNTIME]
    assert words.index("USER") < words.index("ENTRYPOINT")
    assert "RUN" not in words[words.index("USER") :]


def test_the_entrypoint_is_the_dispatch_script_in_exec_form():
    entrypoint = [args for word, args in RUNTIME if word == "ENTRYPOINT"]
    assert entrypoint == ['["/opt/chassis/deployments/docker/entrypoint.sh"]']
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR, "entrypoint.sh must be executable"


def test_no_secret_is_baked_into_the_image():
    for word, args in instructions(DOCKERFILE.read_text()):
        if word in ("ENV", "ARG"):
            for name in re.findall(r"([A-Z_][A-Z0-9_]*)=", args) or [args.split("=")[0]]:
                assert not SECRET_NAME.search(name), f"{word} {name}"
        if word == "COPY":
            assert ".env" not in args and ".chassis" not in args, args
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "**/.env" in ignored and "**/.chassis" in ignored


def test_every_chassis_setting_the_image_sets_is_one_chassis_reads():
    settings = known_settings()
    env = " ".join(args for word, args in RUNTIME if word == "ENV")
    names = re.findall(r"\b(CHASSIS_[A-Z0-9_]+)=", env)
    assert names and all(name in settings for name in names), names


def test_what_the_image_copies_exists_and_is_not_ignored():
    # .dockerignore ignores everything (`**`) but the `!`-listed paths.
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    sources = [
        args.split()[:-1]
        for word, args in STAGES[0]
        if word == "COPY" and not args.startswith("--from")
    ]
    copied = [source for group in sources for source in group]
    assert "chassis" in copied and "flows" in copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source in allowed, f"{source} is excluded by .dockerignore"


def test_the_kubernetes_extra_brings_the_prefect_worker_type_and_the_postgres_driver():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(r.startswith("prefect-kubernetes") for r in extras["kubernetes"])
    assert any(r.startswith("psycopg2") for r in extras["kubernetes"])
    assert '".[kubernetes]"' in DOCKERFILE.read_text()


@pytest.fixture
def stub_path(tmp_path: Path) -> str:
    """A PATH whose chassis, prefect and mlflow print their name and arguments."""
    for program in ("chassis", "prefect", "mlflow"):
        stub = tmp_path / program
        stub.write_text(f'#!/bin/sh\necho {program} "$@"\n')
        stub.chmod(0o755)
    return f"{tmp_path}:/usr/bin:/bin"


@pytest.mark.parametrize(
    ("args", "runs"),
    [
        (["serve", "--model", "digits-mlp"], "chassis serve --model digits-mlp"),
        (["webhook-relay"], "chassis webhook-relay"),
        # What Prefect's Kubernetes worker gives a flow-run pod (it keeps the entrypoint).
        (["prefect", "flow-run", "execute"], "prefect flow-run execute"),
        (["prefect", "worker", "start", "--pool", "p"], "prefect worker start --pool p"),
        (["mlflow", "server"], "mlflow server"),
        ([], "chassis"),
    ],
)
def test_the_entrypoint_runs_chassis_unless_told_prefect_or_mlflow(
    stub_path: str, args: list[str], runs: str
):
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env={"PATH": stub_path},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == runs


# The commands the manifests run through the entrypoint (test_kubernetes_manifests.py
# checks that the manifests run no other chassis command).
@pytest.mark.parametrize("command", ["serve", "webhook-relay"])
def test_the_entrypoint_runs_the_installed_chassis_commands_the_manifests_use(command: str):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), command, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"usage: chassis {command}" in done.stdout
