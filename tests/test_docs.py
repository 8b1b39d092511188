"""The documents a user reads stay true to the code: every operation of the registry's OpenAPI description is
in docs/registry-api.md, and every document the README links exists."""

from __future__ import annotations

import re
from pathlib import Path

from guildnet.registry.openapi import openapi_document

ROOT = Path(__file__).resolve().parent.parent


def test_registry_api_doc_lists_every_openapi_operation() -> None:
    doc = (ROOT / "docs" / "registry-api.md").read_text()
    missing = [f"{method.upper()} {path}" for path, operations in openapi_document("test")["paths"].items()
               for method in operations
               if f"`{method.upper()} {path.replace('{agent_id}', '{id}')}" not in doc]
    assert missing == []


def test_every_relative_link_stays_in_the_repository_and_exists() -> None:
    """The docs stand alone: a link to a file outside the repository is broken for every user."""
    for source in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for target in re.findall(r"\]\((?!https?://|mailto:|#)([^)\s]+?)(?:#[\w-]+)?\)", source.read_text()):
            path = (source.parent / target).resolve()
            assert path.is_relative_to(ROOT), f"{source.name} links outside the repository: {target}"
            assert path.exists(), f"{source.name} links to missing {target}"
