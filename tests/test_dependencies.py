"""pyproject.toml says what the product uses: every third-party module the product imports is declared (as a
dependency, or in the extra that feature needs), and every runtime dependency is imported by the product."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("protocols", "registry", "node", "witness", "cli", "embedding", "storage")
NOT_IMPORTED = {
    "aiosqlite": "the sqlite+aiosqlite:// driver, named in database URLs",
}
"""Runtime dependencies no product module imports by name, and why they are needed anyway."""


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _imported_distributions() -> dict[str, set[str]]:
    """Distribution name -> product files importing it (stdlib and guildnet itself left out)."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top == "guildnet":
                        continue
                    for distribution in _owners(module, owners.get(top, [top])):
                        found.setdefault(distribution.lower().replace("_", "-"), set()).add(
                            str(path.relative_to(ROOT)))
    return found


def _owners(module: str, candidates: list[str]) -> list[str]:
    """The distributions that ship ``module``: for a namespace package (``google``) only those holding the
    subpackage imported (``google.protobuf``: protobuf), not every distribution sharing the namespace."""
    if len(candidates) < 2 or "." not in module:
        return candidates
    prefix = "/".join(module.split(".")[:2])
    owning = [name for name in candidates
              if any(str(f).startswith(prefix) for f in (metadata.distribution(name).files or ()))]
    return owning or candidates


def test_every_imported_package_is_declared() -> None:
    project = _project()
    declared = {_name(r) for r in project["dependencies"]}  # type: ignore[attr-defined]
    extras = {extra: {_name(r) for r in requirements}
              for extra, requirements in project["optional-dependencies"].items()}  # type: ignore[attr-defined]
    undeclared = {}
    for distribution, files in _imported_distributions().items():
        if distribution in declared or any(distribution in names for names in extras.values()):
            continue
        undeclared[distribution] = sorted(files)
    assert not undeclared, f"imported by the product but not declared in pyproject.toml: {undeclared}"


def test_every_runtime_dependency_is_used() -> None:
    declared = {_name(r) for r in _project()["dependencies"]}  # type: ignore[attr-defined]
    unused = declared - set(_imported_distributions()) - set(NOT_IMPORTED)
    assert not unused, f"declared as runtime dependencies but imported by no product module: {sorted(unused)}"
