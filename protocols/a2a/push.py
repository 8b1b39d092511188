"""Push notifications (spec §3.1.7-10, §4.3, §13.2) without I/O: configs, where a webhook may point, the retry
schedule, and the signature that lets a receiver check a notification came from the agent.

A webhook URL is chosen by a caller, so it is hostile input: it could name the node's own admin port, a cloud
metadata service or anything else on the node's network. :func:`refusal` says which addresses a node never posts
to unless its operator allows them (private, loopback, link-local, multicast, reserved and unspecified ones); the
node checks the literal address when a config is created and every resolved address before each delivery.

Authentication of a delivery, two ways at once:

* what the spec names: ``Authorization: {scheme} {credentials}`` from the config's ``authentication`` (and the
  config's ``token`` as ``X-A2A-Notification-Token``), secrets the receiver chose;
* a JWS by the agent's key in force (``A2A-Notification-Signature``, :func:`sign_notification`) over the
  webhook URL, the SHA-256 of the body, the task id and the event id: the receiver pins the key from the agent's
  signed card and needs no shared secret, and the event id lets it drop a redelivered event.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from .. import jws
from ..callerauth import body_digest
from ..did import is_did_key
from ..keys import SigningKey
from .errors import JSON, invalid_params
from .model import MAX_ID_LENGTH

MAX_CONFIGS_PER_TASK: Final = 8
"""A caller cannot make one task fan out to more webhooks than this (each event is posted to each)."""
MAX_URL_LENGTH: Final = 2048
MAX_SECRET_LENGTH: Final = 4096
SIGNATURE_HEADER: Final = "A2A-Notification-Signature"
EVENT_ID_HEADER: Final = "A2A-Notification-Id"
TOKEN_HEADER: Final = "X-A2A-Notification-Token"
NOTIFICATION_TYP: Final = "a2a-push+jws"
SIGNATURE_LIFETIME: Final = 3600
"""Seconds a notification's signature holds: a retried delivery is signed afresh, so this only bounds replay."""


@dataclass(frozen=True, slots=True)
class PushConfig:
    """A TaskPushNotificationConfig as the node keeps it."""

    id: str
    task_id: str
    url: str
    token: str | None = None
    scheme: str | None = None
    credentials: str | None = None

    def to_json(self) -> JSON:
        out: JSON = {"id": self.id, "taskId": self.task_id, "url": self.url}
        if self.token:
            out["token"] = self.token
        if self.scheme:
            auth: JSON = {"scheme": self.scheme}
            if self.credentials:
                auth["credentials"] = self.credentials
            out["authentication"] = auth
        return out

    def headers(self) -> dict[str, str]:
        """The receiver's own secrets, as the spec has them sent."""
        headers: dict[str, str] = {}
        if self.scheme:
            headers["Authorization"] = f"{self.scheme} {self.credentials}".strip()
        if self.token:
            headers[TOKEN_HEADER] = self.token
        return headers


def _string(obj: dict[str, Any], camel: str, snake: str, limit: int) -> str | None:
    value = obj.get(camel, obj.get(snake))
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid_params(f"'{camel}' must be a string")
    if len(value) > limit:
        raise invalid_params(f"'{camel}' is longer than {limit} characters")
    return value


def parse_push_config(params: Any, *, task_id: str | None = None) -> PushConfig:
    """Read a TaskPushNotificationConfig (the Create request, or ``configuration.taskPushNotificationConfig`` of a
    SendMessage). ``task_id`` comes from the path or the message when the config itself names none."""
    if not isinstance(params, dict):
        raise invalid_params("the push notification config must be an object")
    task = _string(params, "taskId", "task_id", MAX_ID_LENGTH) or task_id
    if task is None:
        raise invalid_params("'taskId' is required")
    if task_id is not None and task != task_id:
        raise invalid_params("'taskId' does not match the task the request names")
    url = _string(params, "url", "url", MAX_URL_LENGTH)
    if url is None:
        raise invalid_params("'url' is required")
    check_url(url)
    config_id = _string(params, "id", "id", MAX_ID_LENGTH) or secrets.token_hex(16)
    token = _string(params, "token", "token", MAX_SECRET_LENGTH)
    scheme = credentials = None
    auth = params.get("authentication")
    if auth is not None:
        if not isinstance(auth, dict):
            raise invalid_params("'authentication' must be an object")
        scheme = _string(auth, "scheme", "scheme", 64)
        if scheme is None:
            raise invalid_params("'authentication.scheme' is required")
        if not scheme.replace("-", "").isalnum():
            raise invalid_params("'authentication.scheme' must be an HTTP auth scheme name")
        credentials = _string(auth, "credentials", "credentials", MAX_SECRET_LENGTH)
        if credentials is not None and any(c in credentials for c in "\r\n\0"):
            raise invalid_params("'authentication.credentials' must not contain line breaks")
    if token is not None and any(c in token for c in "\r\n\0"):
        raise invalid_params("'token' must not contain line breaks")
    return PushConfig(config_id, task, url, token, scheme, credentials)


def check_url(url: str) -> tuple[str, int]:
    """``(host, port)`` of a webhook URL, or -32602: http(s) only, no user info (it would be sent on)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise invalid_params(f"'url' is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid_params("'url' must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise invalid_params("'url' must not carry user info")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def refusal(address: str) -> str | None:
    """Why a node must not post to ``address`` unless allowed (None: a public address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                       ("private", ip.is_private), ("multicast", ip.is_multicast), ("reserved", ip.is_reserved),
                       ("unspecified", ip.is_unspecified)):
        if flag:
            return f"is a {kind} address"
    return None


def literal_address(host: str) -> str | None:
    """``host`` if it is an IP literal (``[::1]`` unbracketed), else None: a name is resolved at delivery."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def retry_delay(attempt: int, *, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds before retry number ``attempt`` (1, 2, ...): exponential backoff, capped."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


def sign_notification(key: SigningKey, *, url: str, body: bytes, task_id: str, event_id: str,
                      now: float | None = None) -> str:
    """The ``A2A-Notification-Signature`` of one delivery, by the agent's key in force."""
    issued = int(time.time() if now is None else now)
    return jws.sign({"iss": key.did, "aud": url, "bd": body_digest(body), "tid": task_id, "jti": event_id,
                     "iat": issued, "exp": issued + SIGNATURE_LIFETIME}, key, typ=NOTIFICATION_TYP)


class NotificationRefused(ValueError):
    """A received notification does not verify."""


def verify_notification(token: str, *, expected_did: str, url: str, body: bytes, now: float | None = None) -> JSON:
    """What a webhook receiver checks: the agent ``expected_did`` (pinned from its signed card) signed this body
    for this URL, recently. Returns the claims (``tid``: task id, ``jti``: event id, for deduplication)."""
    try:
        verified, claims = jws.verify_json(token)
    except (jws.MalformedJWS, jws.BadSignature) as exc:
        raise NotificationRefused(f"the signature does not verify: {exc}") from exc
    if verified.header.get("typ") != NOTIFICATION_TYP:
        raise NotificationRefused(f"not a push notification signature (typ {NOTIFICATION_TYP!r})")
    if not is_did_key(verified.signer) or verified.signer != expected_did or claims.get("iss") != expected_did:
        raise NotificationRefused("signed by another key than the agent's")
    if claims.get("aud") != url:
        raise NotificationRefused("signed for another webhook URL")
    if claims.get("bd") != body_digest(body):
        raise NotificationRefused("the body is not the one signed")
    moment = time.time() if now is None else now
    expires = claims.get("exp")
    if not isinstance(expires, int) or moment > expires:
        raise NotificationRefused("the signature has expired")
    return claims
