"""Every error the library raises is defined in chassis/errors.py: a caller catches any of
them without importing Prefect code (flows/, tasks/) or the module that raised it."""

import ast
import inspect
from pathlib import Path

from chassis import errors

ROOT = Path(__file__).resolve().parents[2]
ERROR_NAMES = {
    name
    for name, value in vars(errors).items()
    if inspect.isclass(value) and issubclass(value, BaseException)
}


def exception_classes_defined_in(path: Path) -> list[str]:
    """Classes in `path` that derive from an exception (built-in, or one of errors.py's)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases}
            if bases & (ERROR_NAMES | {"Exception", "BaseException", "TimeoutError"}):
                found.append(f"{path.relative_to(ROOT)}: {node.name}")
    return found


def test_no_error_class_is_defined_outside_errors_py():
    defined = [
        found
        # The library; the CLI's own usage error (chassis_cli/context.py) is argparse's kind.
        for package in ("chassis", "flows", "tasks")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "chassis" / "errors.py"
        for found in exception_classes_defined_in(path)
    ]
    assert defined == []


def test_the_errors_once_defined_in_prefect_modules_are_chassis_errors():
    for name in ("GatesFailed", "RolloutFailed", "RolloutPaused", "RolloutAborted"):
        assert issubclass(getattr(errors, name), errors.ChassisError), name
    assert issubclass(errors.DataQualityFailure, errors.ChassisError)
    assert issubclass(errors.PromotionConflict, errors.RegistryError)
