"""A2A protocol versions (spec §3.6): the ``A2A-Version`` header, and which versions this implementation serves.
"""

from __future__ import annotations

from typing import Final

from .errors import VERSION_NOT_SUPPORTED, A2AError

PROTOCOL_VERSION: Final = "1.0"
LEGACY_VERSION: Final = "0.3"
VERSION_HEADER: Final = "A2A-Version"


def check_version(value: str | None) -> str:
    """Return the negotiated ``Major.Minor``; a missing or empty value means 0.3 (spec §3.6).

    Only 1.0 is served: anything else raises VersionNotSupportedError (-32009), as a2a-sdk 1.3 does
    for a 0.3 call on a 1.0-only endpoint.
    """
    text = (value or "").strip()
    if not text:
        text = LEGACY_VERSION
    major_minor = ".".join(text.split(".")[:2])
    if major_minor != PROTOCOL_VERSION:
        raise A2AError(VERSION_NOT_SUPPORTED,
                       f"A2A version '{major_minor}' is not supported by this endpoint. "
                       f"Expected version '{PROTOCOL_VERSION}'.")
    return major_minor
