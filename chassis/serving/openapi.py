"""The gateway's OpenAPI document, built from the models it serves (their input width)."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chassis.serving.gateway import Gateway


def openapi_document(gateway: "Gateway") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name, model in gateway.models.items():
        width = model.n_features
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
                                "items": {
                                    "type": "array",
                                    "minItems": width,
                                    "maxItems": width,
                                    "items": {"type": "number"},
                                },
                            }
                        },
                    }
                }
            },
        }
        responses = {
            "200": {
                "description": "Predicted classes, and the version that answered",
                "headers": {"X-Model-Version": {"schema": {"type": "integer"}}},
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}
                },
            },
            "4XX": {
                "description": "Invalid request; the body names the problem",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
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
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chassis gateway", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {
                "Prediction": {
                    "type": "object",
                    "properties": {
                        "model": {"type": "string"},
                        "version": {"type": "integer"},
                        "predictions": {"type": "array", "items": {"type": "integer"}},
                    },
                },
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
                },
            }
        },
    }
