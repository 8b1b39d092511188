"""RFC 9457 problem details (``application/problem+json``): the one error shape of the registry API."""

from __future__ import annotations

import json

from aiohttp import web

PROBLEM_TYPE_BASE = "https://guildnet.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

_SLUGS = {
    400: "bad-request",
    401: "unauthorized-write",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "refused",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
}


def problem_body(status: int, title: str, detail: str, **extra: object) -> dict[str, object]:
    """The problem details object itself, for answers that carry several (one per item of a batch)."""
    return {"type": PROBLEM_TYPE_BASE + _SLUGS.get(status, "error"), "title": title, "status": status,
            "detail": detail, **extra}


def problem(status: int, title: str, detail: str, **extra: object) -> web.Response:
    return web.Response(status=status, text=json.dumps(problem_body(status, title, detail, **extra)),
                        content_type=PROBLEM_CONTENT_TYPE)
