"""The controller's OpenAPI 3.1 description (served at ``/openapi.json``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from otel_adaprof import __version__
from otel_adaprof.protocol import ErrorResponse, PollRequest, PollResponse
from otel_adaprof.session_spec import SessionSpec

_JSON = "application/json"
_PROTOBUF = "application/x-protobuf"
_HTML = {"description": "page", "content": {"text/html": {"schema": {"type": "string"}}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": description}
    if schema is not None:
        body["content"] = {_JSON: {"schema": schema}}
    return body


_ERRORS = {
    "400": _answer("invalid input: the body names the field", _ref("ErrorResponse")),
    "401": _answer("missing bearer token", _ref("ErrorResponse")),
    "403": _answer("wrong bearer token", _ref("ErrorResponse")),
}
_SESSION_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_OBJECT = {"type": "object"}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """Every endpoint with its request and answer schemas."""
    schemas: dict[str, Any] = {}
    for model in (SessionSpec, PollRequest, PollResponse, ErrorResponse):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    not_found = {"404": _answer("unknown session", _ref("ErrorResponse"))}
    paths: dict[str, Any] = {
        "/v1/sessions": {
            "post": {
                "summary": "Open a profiling session",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {_JSON: {"schema": _ref("SessionSpec")}},
                },
                "responses": {"201": _answer("the session", _OBJECT), **_ERRORS},
            },
            "get": {"summary": "List sessions", "responses": {"200": _answer("sessions", _OBJECT)}},
        },
        "/v1/sessions/{id}": {
            "get": {
                "summary": "A session: state, params now, counts",
                "parameters": _SESSION_ID,
                "responses": {"200": _answer("the session", _OBJECT), **not_found},
            }
        },
        "/v1/sessions/{id}/stop": {
            "post": {
                "summary": "Complete a session",
                "security": [{"bearer": []}],
                "parameters": _SESSION_ID,
                "responses": {"200": _answer("the session", _OBJECT), **_ERRORS, **not_found},
            }
        },
        "/v1/sessions/{id}/timeline": {
            "get": {
                "summary": "Per window: agent, config version, params, state, reward",
                "parameters": _SESSION_ID,
                "responses": {"200": _answer("windows", _OBJECT), **not_found},
            }
        },
        "/v1/sessions/{id}/profile": {
            "get": {
                "summary": "The session's merged profile",
                "parameters": [
                    *_SESSION_ID,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"enum": ["speedscope", "collapsed", "pprof", "otlp"]},
                    },
                ],
                "responses": {"200": _answer("profile"), "400": _ERRORS["400"], **not_found},
            }
        },
        "/v1/agents/poll": {
            "post": {
                "summary": "An agent's window report; answers the params to run next",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {_JSON: {"schema": _ref("PollRequest")}},
                },
                "responses": {"200": _answer("next params", _ref("PollResponse")), **_ERRORS},
            }
        },
        "/v1/agents": {
            "get": {"summary": "Agents seen", "responses": {"200": _answer("agents", _OBJECT)}}
        },
        "/v1/opamp": {
            "post": {
                "summary": "OpAMP over HTTP: AgentToServer in, ServerToAgent out (protobuf; "
                "params as the remote config file adaprof.json)",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {_PROTOBUF: {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {
                    "200": {
                        "description": "ServerToAgent",
                        "content": {_PROTOBUF: {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "400": {"description": "ServerToAgent with error_response (names the field)"},
                    "401": _ERRORS["401"],
                    "403": _ERRORS["403"],
                    "415": _answer("not application/x-protobuf", _ref("ErrorResponse")),
                },
            }
        },
        "/": {"get": {"summary": "The controller page (HTML)", "responses": {"200": _HTML}}},
        "/page/{name}": {
            "get": {
                "summary": "Script and style of the page",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["app.js", "flame.js", "style.css"]},
                    }
                ],
                "responses": {"200": {"description": "the file"}, "404": _answer("no such file")},
            }
        },
        "/v1/replicas": {
            "get": {
                "summary": "This replica's owned models and every model lease (PostgreSQL)",
                "responses": {"200": _answer("replica and leases", _OBJECT)},
            }
        },
        "/sampling": {"get": _sampling_op()},
        "/api/sampling": {"get": _sampling_op()},
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _answer("ok", _OBJECT)}}},
        "/readyz": {
            "get": {
                "summary": "Readiness (database answers)",
                "responses": {"200": _answer("ready", _OBJECT), "503": _answer("not ready")},
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": _answer("text")}}
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _answer("OpenAPI")}}
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "otel-adaprof controller", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _sampling_op() -> dict[str, Any]:
    return {
        "summary": "Jaeger remote sampling strategy of a service",
        "parameters": [
            {"name": "service", "in": "query", "required": True, "schema": {"type": "string"}}
        ],
        "responses": {"200": _answer("strategy", _OBJECT), "400": _ERRORS["400"]},
    }
