"""How the `chassis` command is put together: command modules get a `Context` and never
import `chassis_cli.main`; every command has the one handler signature."""

import argparse
import ast
import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import chassis_cli
from chassis.rollout.policy import RolloutPolicy
from chassis_cli import context as context_module
from chassis_cli.context import Context
from chassis_cli.main import build_parser, main

PACKAGE = Path(chassis_cli.__file__).parent


def imported_modules(source: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the package
                base = "chassis_cli" + (f".{base}" if base else "")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_no_module_of_chassis_cli_imports_main():
    modules = sorted(p for p in PACKAGE.glob("*.py") if p.name != "main.py")
    # Not an empty loop: the command modules are among those read.
    assert {"registry_commands.py", "rollout_commands.py", "context.py"} <= {
        p.name for p in modules
    }
    importing_main = [p.name for p in modules if "chassis_cli.main" in imported_modules(p)]
    assert importing_main == []


def test_the_import_check_sees_every_way_of_importing_main(tmp_path):
    source = tmp_path / "example.py"
    for line in (
        "from chassis_cli.main import load_settings",
        "import chassis_cli.main",
        "from chassis_cli import main",
        "from . import main",
        "def f():\n    from .main import prepare",
    ):
        source.write_text(line + "\n")
        assert "chassis_cli.main" in imported_modules(source), line


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_has_the_one_handler_signature():
    found = commands()
    # Not a few: every command there was when the handlers were made uniform, at least.
    assert set(found) >= {
        *("release", "train", "specs", "versions", "scaffold-suite", "gates", "promote"),
        *("rollback", "retire", "recover", "history", "serve", "webhook-relay", "rollout"),
        *("traffic", "drift-check", "compress", "ui"),
    }
    for name, command in found.items():
        handler = command.get_default("handler")
        assert handler.__name__ != "<lambda>", name
        assert list(inspect.signature(handler).parameters) == ["args", "context"], name


class RecordingContext(Context):
    """Runs no flow: records what a handler asked for and returns a canned outcome."""

    def __init__(self, outcome: Any) -> None:
        super().__init__()
        self.outcome = outcome
        self.runs: list[tuple[str, dict[str, Any]]] = []
        self.checked: list[tuple[str, int | None]] = []

    def require_registered(self, model: str, version: int | None = None) -> None:
        self.checked.append((model, version))

    def run_flow(self, name: str, parameters: dict[str, Any]) -> Any:
        self.runs.append((name, parameters))
        return self.outcome


def test_a_command_runs_its_flow_through_the_context_it_is_given(capsys):
    moved = SimpleNamespace(
        model_name="m",
        noop=False,
        action="rollback",
        audit_sequence=4,
        aliases_before={"champion": 2},
        aliases_after={"champion": 1},
    )
    context = RecordingContext(moved)
    assert main(["rollback", "--model", "m", "--reason", "bad canary"], context) == 0
    assert context.checked == [("m", None)]  # the model is checked before the flow runs
    assert context.runs == [("rollback", {"model_name": "m", "reason": "bad canary"})]
    assert "m: rollback recorded as audit #4" in capsys.readouterr().out


def test_options_valid_alone_but_not_together_exit_2_with_the_command_usage(capsys):
    context = RecordingContext(None)
    argv = ["promote", "--model", "m", "--version", "1", "--allow-retired"]
    with pytest.raises(SystemExit) as exit_:
        main(argv, context)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: chassis promote")
    assert "chassis promote: error: --allow-retired applies to --to challenger only" in error
    assert context.runs == []  # refused before any flow ran


def test_a_context_loads_settings_and_prepares_the_environment_once(monkeypatch):
    loaded: list[object] = []
    prepared: list[object] = []

    def load() -> object:
        loaded.append(object())
        return loaded[-1]

    monkeypatch.setattr(context_module, "load_settings", load)
    monkeypatch.setattr(context_module, "prepare", prepared.append)
    context = Context()
    assert loaded == [] and prepared == []  # nothing until a command asks (`chassis specs`)
    first = context.settings
    assert context.prepare() is first and context.prepare() is first
    assert loaded == [first] and prepared == [first]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([], None),
        (
            ["--p99-budget-ms", "400", "--min-agreement", "0.9"],
            RolloutPolicy(p99_budget_ms=400, min_agreement=0.9),
        ),
    ],
    ids=["defaults", "given"],
)
def test_release_hands_the_canary_thresholds_it_is_given_to_the_flow(
    given: list[str],
    expected: RolloutPolicy | None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import flows.release

    captured: dict[str, object] = {}
    monkeypatch.setenv("CHASSIS_HOME", str(tmp_path))
    monkeypatch.setattr(flows.release, "release", lambda **kwargs: captured.update(kwargs))
    monkeypatch.setattr("chassis_cli.documents.ReleaseDocument.of", lambda outcome: None)
    monkeypatch.setattr("chassis_cli.display.print_release", lambda *args: None)
    assert main(["release", *given]) == 0
    assert captured["rollout_policy"] == expected
