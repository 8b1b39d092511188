"""The dependency direction of docs/architecture.md, enforced: import-linter's contracts (pyproject.toml), and
no product module importing anything that lives under tests/."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("protocols", "registry", "node", "witness", "cli", "embedding", "storage")


def _typecheck_tree() -> Path:
    """build/typecheck/guildnet: the product under its installed names (what `make lint` builds for mypy)."""
    tree = ROOT / "build" / "typecheck" / "guildnet"
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "__init__.py").touch()
    for package in PRODUCT:
        link = tree / package
        if not link.is_symlink():
            link.symlink_to(Path("..", "..", "..", package))
    return tree.parent


def test_import_contracts_hold() -> None:
    env = {**os.environ, "PYTHONPATH": str(_typecheck_tree())}
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "0 broken" in result.stdout, result.stdout + result.stderr


def test_no_product_module_imports_test_code() -> None:
    test_modules = {"tests", "conftest"} | {p.stem for p in (ROOT / "tests").rglob("*.py")}
    offenders = []
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                         else [])
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in test_modules]
    assert not offenders, offenders
