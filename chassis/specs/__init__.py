"""Specs bundled with Chassis; each works offline on a dataset that ships with scikit-learn."""

BUNDLED_SPECS: dict[str, str] = {
    "digits": "chassis.specs.digits:spec",
    "wine": "chassis.specs.wine:spec",
}
