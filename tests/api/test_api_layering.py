"""The API reaches rows only through the services (issue 8, item 9): no module of poolvisor.api
imports the store, so persistence stays behind the use cases and their transactions."""

from __future__ import annotations

import ast
from pathlib import Path

import poolvisor.api

API = Path(poolvisor.api.__file__).parent


def test_no_api_module_imports_the_store() -> None:
    offenders = []
    for path in sorted(API.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(API)}: {n}" for n in names if n.startswith("poolvisor.store")]
    assert offenders == []
