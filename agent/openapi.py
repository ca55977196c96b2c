"""The OpenAPI 3.1 document of /api/v1, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from agent.model import Cause

_CAUSES = [c.value for c in Cause]
_TS = {"type": "string", "format": "date-time"}
_NTS = {"type": ["string", "null"], "format": "date-time"}

_SERVICE_STATUS: dict[str, Any] = {
    "type": "object",
    "required": ["service", "state", "cause", "hint", "action_needed", "detail"],
    "properties": {
        "service": {"enum": ["imap", "smtp", "caldav"]},
        "state": {"enum": ["ok", "degraded", "disconnected"]},
        "cause": {"enum": [*_CAUSES, None]},
        "hint": {"type": ["string", "null"]},
        "action_needed": {"type": "boolean"},
        "detail": {"type": "string"},
        "since": _NTS,
        "last_probe_at": _NTS,
        "last_success_at": _NTS,
        "consecutive_failures": {"type": "integer"},
    },
}

_BANNER: dict[str, Any] = {
    "type": ["object", "null"],
    "required": ["show", "severity", "title", "message", "cause", "impacts", "reconnect_url"],
    "properties": {
        "show": {"type": "boolean"},
        "severity": {"enum": ["error", "warning"]},
        "title": {"type": "string"},
        "message": {"type": "string"},
        "cause": {"enum": _CAUSES},
        "hint": {"type": ["string", "null"]},
        "impacts": {"type": "array", "items": {"type": "string"}},
        "services": {"type": "array", "items": {"enum": ["imap", "smtp", "caldav"]}},
        "reconnect_url": {"type": "string"},
        "since": _TS,
    },
}

_ACCOUNT_STATUS: dict[str, Any] = {
    "type": "object",
    "required": ["account", "state", "banner", "services", "checked_at"],
    "properties": {
        "account": {"type": "string"},
        "state": {"enum": ["ok", "degraded", "disconnected"]},
        "banner": _BANNER,
        "services": {"type": "array", "items": _SERVICE_STATUS},
        "checked_at": _NTS,
    },
}

_OWNER_BANNER: dict[str, Any] = {
    "type": "object",
    "required": ["owner", "show", "severity", "title", "message", "accounts", "checked_at"],
    "properties": {
        "owner": {"type": "string"},
        "show": {"type": "boolean"},
        "severity": {"enum": ["error", "warning", None]},
        "title": {"type": "string"},
        "message": {"type": "string"},
        "accounts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "account": {"type": "string"},
                    "address": {"type": "string"},
                    "services": {"type": "array", "items": {"type": "string"}},
                    "cause": {"enum": _CAUSES},
                    "hint": {"type": ["string", "null"]},
                    "impacts": {"type": "array", "items": {"type": "string"}},
                    "reconnect_url": {"type": "string"},
                    "since": _TS,
                },
            },
        },
        "checked_at": _NTS,
    },
}

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_COMMON = {
    "304": {"description": "Not modified (If-None-Match matched the ETag)"},
    "401": _ok(_ERROR, "Missing or invalid bearer token"),
}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_ACCOUNT_PARAM = _path_param("account_id")

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "syncwatch portal API",
        "version": "1",
        "description": "Banner status of connected mailboxes and calendars, for the portal's "
        "backend (never for browsers). Poll with If-None-Match.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "AccountStatus": _ACCOUNT_STATUS,
            "OwnerBanner": _OWNER_BANNER,
            "Error": _ERROR,
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/accounts/{account_id}/status": {
            "get": {
                "summary": "Health and banner of one account",
                "parameters": [_ACCOUNT_PARAM],
                "responses": {
                    "200": _ok(_ACCOUNT_STATUS, "The account's status"),
                    "404": _ok(_ERROR, "Unknown account"),
                    **_COMMON,
                },
            }
        },
        "/api/v1/accounts/{account_id}/recheck": {
            "post": {
                "summary": "Re-read the account from the inventory and probe it now",
                "description": "Call after the user reconnected. Joins a probe in flight only "
                "if it uses the same credentials. Limited per account.",
                "parameters": [_ACCOUNT_PARAM],
                "responses": {
                    "200": _ok(_ACCOUNT_STATUS, "The fresh status"),
                    "404": _ok(_ERROR, "Unknown account"),
                    "429": _ok(_ERROR, "Asked too often; see Retry-After"),
                    **_COMMON,
                },
            }
        },
        "/api/v1/users/{owner_id}/banner": {
            "get": {
                "summary": "The one banner to show a signed-in user, across their accounts",
                "parameters": [_path_param("owner_id")],
                "responses": {"200": _ok(_OWNER_BANNER, "The owner's banner"), **_COMMON},
            }
        },
        "/api/v1/bursts/{provider}/release": {
            "post": {
                "summary": "Release owner emails held by the burst guard for a provider",
                "parameters": [_path_param("provider")],
                "responses": {"200": {"description": "How many emails were released"}, **_COMMON},
            }
        },
    },
}
