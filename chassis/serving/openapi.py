"""The gateway's OpenAPI document, built from the models it serves (their input width, or
texts for a text model).

Every route is described, with every status it can answer, so a schema-driven fuzzer (the
fault suite runs schemathesis against it) or a generated client knows what to expect.
"""

from typing import TYPE_CHECKING, Any

from chassis.serving.admin_bodies import RolloutBody, SwitchBody
from chassis.serving.result_cache import COALESCED, LOCAL, MISS, REDIS

if TYPE_CHECKING:
    from chassis.serving.gateway import Gateway


def openapi_document(gateway: "Gateway") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name, model in gateway.models.items():
        request = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["instances"],
                        "properties": {
                            "instances": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": gateway.config.limits.max_rows,
                                "items": _text() if model.reads_text else _row(model.n_features),
                            }
                        },
                    }
                }
            },
        }
        responses = {
            "200": {
                "description": "Predicted classes, and the version that answered",
                "headers": {
                    "X-Model-Version": {"schema": {"type": "integer"}},
                    **_cache_header(gateway, name),
                },
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}
                },
            },
            "4XX": _error("Invalid request; the body names the problem"),
            "500": _error("The model failed on this request (counted as the version's error)"),
            "503": _error("Not loaded yet, draining, or over the connection limit"),
            "504": _error("Not answered within the request timeout; the work was abandoned"),
        }
        paths[f"/v1/models/{name}/predict"] = {
            "post": {
                "summary": f"Predict with {name} (stable, or the canary's share)",
                "parameters": [
                    {
                        "name": "X-Request-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Sticky routing: the same key reaches the same version",
                    }
                ],
                "requestBody": request,
                "responses": responses,
            }
        }
        paths[f"/v1/models/{name}/preview/predict"] = {
            "post": {
                "summary": f"Blue-green: predict with {name}'s idle color",
                "requestBody": request,
                "responses": responses,
            }
        }
        paths[f"/v1/models/{name}/feedback"] = {"post": _feedback_operation(name)}
    paths.update(_operational_paths())
    paths.update(_admin_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chassis gateway", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Prediction": {
                    "type": "object",
                    "required": ["model", "version", "predictions", "ids"],
                    "properties": {
                        "model": {"type": "string"},
                        "version": {"type": "integer"},
                        "predictions": {
                            "type": "array",
                            "items": {"type": "number"},
                            "description": "One per row: the class label (an integer) for "
                            "a classifier, the predicted value for a regressor",
                        },
                        "ids": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "One per row, in order: the prediction's id, to "
                            "send its true label to /v1/models/{name}/feedback",
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "status"],
                    "properties": {
                        "error": {"type": "string"},
                        "status": {"type": "integer"},
                        # Feedback refusals: why (the metric's label) and which batch item.
                        "reason": {"type": "string"},
                        "index": {"type": ["integer", "null"]},
                    },
                },
                "RolloutBody": RolloutBody.model_json_schema(),
                "SwitchBody": SwitchBody.model_json_schema(),
            },
        },
    }


FLOAT32_MAX = 3.4028234663852886e38


def _feedback_operation(name: str) -> dict[str, Any]:
    item = {
        "type": "object",
        "required": ["id", "label"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "description": "A prediction id from a predict answer"},
            "label": {
                "type": "number",
                "description": "The true answer: a class (an integer) for a classifier, the "
                "value for a regressor",
            },
        },
    }
    batch = {
        "type": "object",
        "required": ["feedback"],
        "additionalProperties": False,
        "properties": {"feedback": {"type": "array", "minItems": 1, "items": item}},
    }
    return {
        "summary": f"The true labels of {name}'s predictions, by prediction id",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [item, batch]}}},
        },
        "responses": {
            "200": {"description": "Every item joined and counted", "content": JSON_OBJECT},
            "4XX": _error(
                "Refused whole, nothing counted: malformed (400/413/415/422), unknown_id "
                "(404), duplicate (409), too_late (410), bad_label (422)"
            ),
            "503": _error(
                "With peers (CHASSIS_GATEWAY_PEERS): the replica that answered a prediction "
                "did not answer (peer_unavailable); nothing counted, send it again"
            ),
        },
    }


def _row(width: int) -> dict[str, Any]:
    return {
        "type": "array",
        "minItems": width,
        "maxItems": width,
        # What the model takes: float32, finite.
        "items": {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX},
    }


def _text() -> dict[str, Any]:
    return {
        "type": "string",
        # Something besides whitespace. How many tokens a text may have depends on the
        # version that reads it; a longer one is refused with a 422 naming its row.
        "pattern": "\\S",
        "description": "A text, tokenized by the answering version's own tokenizer",
    }


JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _operational_paths() -> dict[str, Any]:
    def get(summary: str, content: dict[str, Any], *others: str) -> dict[str, Any]:
        responses: dict[str, Any] = {"200": {"description": summary, "content": content}}
        for status in others:
            responses[status] = {"description": "Not ready; the body says why", "content": content}
        return {"get": {"summary": summary, "responses": responses}}

    return {
        "/healthz": get("The process answers", JSON_OBJECT),
        "/readyz": get(
            "Every model loaded and verified (with --allow-missing-models: one); each model's "
            "state, reasons, mismatches",
            JSON_OBJECT,
            "503",
        ),
        "/metrics": get("Prometheus exposition", {"text/plain": {"schema": {"type": "string"}}}),
        "/v1/models": get("The models served", JSON_OBJECT),
        "/openapi.json": get("This document", JSON_OBJECT),
    }


def _admin_paths() -> dict[str, Any]:
    """The admin API: bearer token; 401 without it, 4xx naming the field for a bad body."""
    responses = {
        "200": {"description": "The model's status after the change", "content": JSON_OBJECT},
        "401": _error("Missing or wrong bearer token"),
        "4XX": _error("Invalid request; the body names the problem"),
    }
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}

    def operation(summary: str, body: str | None = None) -> dict[str, Any]:
        described: dict[str, Any] = {
            "summary": summary,
            "security": [{"adminToken": []}],
            "parameters": [name],
            "responses": responses,
        }
        if body is not None:
            described["requestBody"] = {
                "required": False,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}
                },
            }
        return described

    paths: dict[str, Any] = {
        "/admin/status": {
            "get": {
                "summary": "Every model's split, versions and statistics",
                "security": [{"adminToken": []}],
                "responses": {"200": responses["200"], "401": responses["401"]},
            }
        },
        "/admin/restart": {
            "post": {
                "summary": "Drain and exit for the local supervisor to start this replica "
                "again (chassis serve --replicas N); 409 when not supervised",
                "security": [{"adminToken": []}],
                "responses": {
                    "202": {"description": "Restarting: draining now", "content": JSON_OBJECT},
                    "401": responses["401"],
                    "409": _error("Not under the local supervisor: a restart would stop it"),
                },
            }
        },
        "/admin/models/{name}": {"get": operation("One model's split, versions and statistics")},
        "/admin/models/{name}/rollout": {
            "post": operation("Set a canary, shadow or blue-green split", "RolloutBody")
        },
        "/admin/models/{name}/switch": {
            "post": operation("Blue-green: make the idle color live", "SwitchBody")
        },
    }
    for action, summary in (
        ("rollback", "Candidate traffic to 0; after a switch, back to the warm color"),
        ("promote", "The candidate becomes the stable version"),
        ("sync", "Apply the registry's rollout record now"),
        ("follow-champion", "Serve the champion alias now, between rollouts"),
        ("reset-stats", "Zero the per-version statistics"),
    ):
        paths[f"/admin/models/{{name}}/{action}"] = {"post": operation(summary)}
    return paths


def _cache_header(gateway: "Gateway", name: str) -> dict[str, object]:
    """x-chassis-cache, on the answers of a model with the result cache (README.md)."""
    cache = gateway.result_cache
    if cache is None or name not in cache.models:
        return {}
    levels = [LOCAL, REDIS, MISS, COALESCED]
    return {"X-Chassis-Cache": {"schema": {"type": "string", "enum": levels}}}
