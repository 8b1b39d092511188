"""The registry's OpenAPI 3.1 description, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from .records import MAX_REGISTRATIONS
from .store import QUERY_INT_MAX

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_SIGNED_BODY = {
    "required": True,
    "description": "A compact JWS (alg EdDSA, kid = signer did:key) whose payload is a JSON object with "
                   "'action', 'iat' (unix seconds) and 'nonce' (>= 16 random bytes, base64url).",
    "content": {"application/jose": {"schema": {"type": "string", "maxLength": 262144}}},
}
_AGENT_ID = {"name": "agent_id", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "the agent's did:key"}
_WRITE_REFUSALS = {code: _PROBLEM for code in ("400", "401", "408", "409", "413", "415", "429")}
"""Every signed write may be refused as malformed, unauthorised, too slow, conflicting, too large, of the wrong
media type, or over its sender's rate limit (429 with Retry-After)."""
_WRITE_OK = {"description": "accepted", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/WriteResult"}}}}


def _signed_write(summary: str, ok: str = "200") -> dict[str, Any]:
    return {"summary": summary, "parameters": [_AGENT_ID], "requestBody": _SIGNED_BODY,
            "responses": {ok: _WRITE_OK, "404": _PROBLEM, **_WRITE_REFUSALS}}


def _query_int(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": QUERY_INT_MAX}}


def openapi_document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "guildnet registry", "version": version,
                 "description": "NANDA-style agent index: signed AgentFacts, discovery, liveness, revocation, "
                                "receipts and reputation, and a transparency log of every signed write."},
        "paths": {
            "/v1/agents": {
                "post": {
                    "summary": "Register an agent (201) or update it with a higher version (200)",
                    "requestBody": _SIGNED_BODY,
                    "responses": {"201": _WRITE_OK, "200": _WRITE_OK, **_WRITE_REFUSALS},
                },
                "get": {
                    "summary": "Search live and stale agents by skill, text, organisation",
                    "parameters": [
                        {"name": "skill", "in": "query", "schema": {"type": "string", "maxLength": 64}},
                        {"name": "q", "in": "query", "description": "matched by words and by meaning (see match)",
                         "schema": {"type": "string", "maxLength": 256}},
                        {"name": "match", "in": "query", "description": "how q matches: words and meaning fused "
                         "(reciprocal rank), words alone (full-text search) or meaning alone (embeddings)",
                         "schema": {"type": "string", "enum": ["hybrid", "words", "meaning"], "default": "hybrid"}},
                        {"name": "org", "in": "query", "description": "an organisation DID, or an organisation name",
                         "schema": {"type": "string", "maxLength": 128}},
                        {"name": "live", "in": "query", "schema": {"type": "boolean"}},
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 512}},
                    ],
                    "responses": {"200": {"description": "matching agents", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/SearchResult"}}}}, "400": _PROBLEM},
                },
            },
            "/v1/agents/{agent_id}": {
                "get": {"summary": "One agent's signed AgentFacts and status", "parameters": [_AGENT_ID],
                        "responses": {"200": {"description": "the agent", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/AgentRecord"}}}}, "400": _PROBLEM,
                                      "404": _PROBLEM}},
            },
            "/v1/agents/{agent_id}/heartbeat": {"post": _signed_write("Report liveness (action 'heartbeat')")},
            "/v1/agents/{agent_id}/revoke": {"post": _signed_write("Revoke for ever (action 'revoke')")},
            "/v1/agents/{agent_id}/withdraw": {"post": _signed_write(
                "The organisation withdraws its endorsement: signed by the organisation key (action 'withdraw'); "
                "the agent is revoked at once")},
            "/v1/agents/{agent_id}/rotate": {
                "post": _signed_write("Rotate the key: the current key signs {'action': 'rotate', 'new_key'}")},
            "/v1/agents/{agent_id}/reputation": {"get": {
                "summary": "Reputation for one skill (or pooled): Beta score, 95% interval, evidence and inputs",
                "parameters": [_AGENT_ID, {"name": "skill", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the score and what it was computed from"}, "400": _PROBLEM,
                              "404": _PROBLEM, "503": _PROBLEM}}},
            "/v1/reputation": {"get": {
                "summary": "Scores of up to 64 agents for one skill: score, lower bound, evidence, receipts",
                "parameters": [{"name": "agent", "in": "query", "required": True, "style": "form", "explode": True,
                                "schema": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                           "maxItems": 64}},
                               {"name": "skill", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "agents: id -> score"}, "400": _PROBLEM, "503": _PROBLEM}}},
            "/v1/receipts": {"post": {
                "summary": "Submit a countersigned receipt (action 'receipt'), signed by the caller's current key",
                "requestBody": _SIGNED_BODY,
                "responses": {"201": {"description": "counted and logged: receipt_id, log_index"},
                              "403": _PROBLEM, "422": _PROBLEM, **_WRITE_REFUSALS}}},
            "/v1/registrations": {"post": {
                "summary": f"Register or update up to {MAX_REGISTRATIONS} agents in one request: each item is the "
                           "signed write POST /v1/agents takes, checked, stored and logged on its own; the answer "
                           "lists each one's result (its WriteResult with 'status' 201 or 200) or refusal (a "
                           "Problem), in order",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["registrations"], "additionalProperties": False,
                    "properties": {"registrations": {
                        "type": "array", "minItems": 1, "maxItems": MAX_REGISTRATIONS,
                        "items": {"type": "string", "description": "a compact JWS, as POST /v1/agents takes"}}}}}}},
                "responses": {"200": {"description": "one result per registration, in order", "content": {
                    "application/json": {"schema": {"type": "object", "required": ["results"], "properties": {
                        "results": {"type": "array", "items": {"type": "object", "required": ["status"]}}}}}}},
                    **{code: _PROBLEM for code in ("400", "408", "413", "415", "429")}}}},
            "/v1/heartbeats": {"post": {
                "summary": "Node-level heartbeat (action 'node_heartbeat', 'agents': up to 2,048 ids), signed by the "
                           "organisation key that endorsed them: keeps them all live",
                "requestBody": _SIGNED_BODY,
                "responses": {"200": {"description": "live: agents kept live; missing: ids unknown, revoked or of "
                                                     "another organisation; seq"}, **_WRITE_REFUSALS}}},
            "/v1/log/head": {"get": {"summary": "Signed tree head (C2SP checkpoint), size, root",
                                     "responses": {"200": {"description": "the head"}}}},
            "/v1/log/inclusion": {"get": {
                "summary": "RFC 9162 inclusion proof of a leaf, by index or leaf_hash (hex)",
                "parameters": [_query_int("index"), _query_int("size"),
                               {"name": "leaf_hash", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "index, size, leaf_hash, proof"}, "400": _PROBLEM}}},
            "/v1/log/consistency": {"get": {
                "summary": "RFC 9162 consistency proof between two tree sizes",
                "parameters": [_query_int("old"), _query_int("new")],
                "responses": {"200": {"description": "old, new, proof"}, "400": _PROBLEM}}},
            "/v1/log/entries": {"get": {
                "summary": "Log entries [start, end), at most 256, with their exact leaf data",
                "parameters": [_query_int("start"), _query_int("end")],
                "responses": {"200": {"description": "entries"}, "400": _PROBLEM}}},
            "/v1/watch": {"get": {
                "summary": "WebSocket stream of index changes; resume with ?since=SEQ",
                "parameters": [_query_int("since")],
                "responses": {"101": {"description": "switching to WebSocket"}, "400": _PROBLEM,
                              "429": _PROBLEM, "503": _PROBLEM}}},
            "/healthz": {"get": {"summary": "liveness of the registry process",
                                 "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "readiness: the database answers",
                                "responses": {"200": {"description": "ready"},
                                              "503": {"description": "not ready: {\"status\", \"reason\"}"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text exposition format)",
                                 "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}}}},
        },
        "components": {
            "responses": {"Problem": {"description": "RFC 9457 problem details", "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
            "schemas": {
                "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"}}},
                "WriteResult": {"type": "object", "required": ["id", "version", "seq"], "properties": {
                    "id": {"type": "string"}, "version": {"type": "integer"}, "seq": {"type": "integer"},
                    "domain": {"$ref": "#/components/schemas/DomainMark"}}},
                "DomainMark": {
                    "type": "object", "required": ["name", "organisation", "status", "checked_at", "failures"],
                    "description": "The registry's statement about the domain the facts claim for the organisation "
                                   "(docs/domains.md): a node that requires a verified domain re-checks the proof.",
                    "properties": {
                        "name": {"type": "string"}, "organisation": {"type": "string"},
                        "status": {"enum": ["verified", "unverified", "withdrawn"]},
                        "method": {"enum": ["dns", "https", None]},
                        "verified_at": {"type": ["number", "null"]}, "checked_at": {"type": "number"},
                        "failures": {"type": "integer", "minimum": 0}, "detail": {"type": "string"}}},
                "AgentRecord": {"type": "object", "required": ["facts", "id", "live", "last_seen", "revoked"],
                                "properties": {
                                    "facts": {"type": "object"}, "id": {"type": "string"},
                                    "current_key": {"type": "string"}, "version": {"type": "integer"},
                                    "live": {"type": "boolean"}, "last_seen": {"type": "number"},
                                    "revoked": {"type": "boolean"}, "jws": {"type": "string"},
                                    "domain": {"$ref": "#/components/schemas/DomainMark"}}},
                "SearchResult": {"type": "object", "required": ["agents", "next", "seq"], "properties": {
                    "agents": {"type": "array", "items": {"$ref": "#/components/schemas/AgentRecord"}},
                    "next": {"type": ["string", "null"]},
                    "seq": {"type": "integer", "description": "change-feed position read before the page"}}},
            },
        },
    }
