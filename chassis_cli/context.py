"""What every `chassis` command handler is given: settings, a prepared environment, flows to run.

Each command registers `handler(args, context) -> exit code` with `set_defaults`, and reads
settings, prepares the environment and runs flows through the `Context` it is passed, so no
command module imports `chassis_cli.main` (which imports them all to build the parser).
Nothing heavy is imported here: `chassis --help` loads this module too.
"""

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from chassis.settings import ChassisSettings
    from chassis_cli.documents import Document

EXIT_FAILURE = 1
EXIT_USAGE = 2  # what argparse exits with on a bad option, and UsageError too
EXIT_INTERRUPTED = 130

# The flows a command runs by name, as package.module:attribute (imported when run).
FLOWS = {
    "gates": "flows.promotion:gates",
    "promote": "flows.promotion:promote",
    "rollback": "flows.promotion:rollback",
    "retire": "flows.promotion:retire",
    "rollout": "flows.rollout:rollout",
    "drift_check": "flows.monitoring:drift_check",
    "diagnose": "flows.diagnose:diagnose",
}


class UsageError(Exception):
    """Options that are each valid but not together: reported like argparse's own errors
    (the command's usage line, then the message; exit 2)."""


class Context:
    """Settings loaded once, on first use (so `chassis specs` works with a bad setting), the
    environment prepared once, before any heavy import, and where the result goes."""

    def __init__(self) -> None:
        self._settings: ChassisSettings | None = None
        self._prepared = False
        # With --json: the command's one document goes to `stdout`, while everything else
        # the command prints is sent to stderr (see main).
        self.as_json = False
        self.stdout: TextIO = sys.stdout
        # The command line as given (without the program name): a command that starts
        # itself again in a child process (`serve --replicas`) passes it on.
        self.argv: list[str] = sys.argv[1:]

    @property
    def settings(self) -> "ChassisSettings":
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def prepare(self) -> "ChassisSettings":
        """Quiet, offline environment and local state folders; a running Prefect server is
        used if there is one. Returns the settings (changes made to them before this call,
        like a command's --host, are the ones prepared)."""
        settings = self.settings
        if not self._prepared:
            prepare(settings)
            self._prepared = True
        return settings

    def show(self, document: "Document", human: Callable[[], None]) -> None:
        """A command's result: with --json its document, else `human()`'s rendering of it."""
        if self.as_json:
            self.stdout.write(document.to_json())
            self.stdout.flush()
        else:
            human()

    def require_registered(self, model: str, version: int | None = None) -> None:
        """Refuse an unknown model or version before a flow run is created for it."""
        from chassis_cli.preflight import require_registered

        require_registered(self.prepare(), model, version)

    def require_champion(self, model: str, purpose: str) -> int:
        """The model's champion; one that has none is refused before any run (the check
        or the traffic would only fail)."""
        from chassis_cli.preflight import require_champion

        return require_champion(self.prepare(), model, purpose)

    def run_flow(self, name: str, parameters: dict[str, Any]) -> Any:
        """Prepare the environment, then run a flow of `FLOWS` with a progress display;
        a failure is the command's one `error:` line, not Prefect's traceback."""
        import importlib

        from chassis_cli.display import progress
        from chassis_cli.flow_console import failures_reported_by_the_cli

        self.prepare()
        module, _, attribute = FLOWS[name].partition(":")
        with failures_reported_by_the_cli(), progress(name):
            flow = getattr(importlib.import_module(module), attribute)
            return flow(**parameters)


Handler = Callable[[argparse.Namespace, Context], int]


def load_settings() -> "ChassisSettings":
    from pydantic import ValidationError

    from chassis.errors import SettingsError
    from chassis.settings import ChassisSettings

    try:
        return ChassisSettings()
    except ValidationError as error:
        problems = "; ".join(
            f"CHASSIS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


def prepare(settings: "ChassisSettings") -> None:
    """Quiet, offline environment and local state folders, before heavy imports."""
    from chassis.quiet import apply_quiet_environment

    settings.ensure_local_state()
    apply_quiet_environment(settings.prefect_home)
    use_running_prefect_server(settings)


def use_running_prefect_server(settings: "ChassisSettings") -> None:
    """If `chassis ui` is serving Prefect, report runs to it so they appear live: at the
    address its record gives (whatever ports it was given), or the one CHASSIS_PREFECT_UI_PORT
    names. A PREFECT_API_URL of the user's wins. Its PREFECT_UI_URL (a proxy in front) goes
    with it, for the links runs write."""
    if os.environ.get("PREFECT_API_URL"):
        return
    ui, api = settings.prefect_urls()
    # No server: Prefect starts its own temporary one on the same database.
    if prefect_answers(api, timeout=0.5):
        os.environ["PREFECT_API_URL"] = api
        os.environ.setdefault("PREFECT_UI_URL", ui)


def prefect_answers(api_url: str, timeout: float) -> bool:
    """Whether a Prefect API answers its health check at `api_url`."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False
