"""policy/ stays pure (ARCHITECTURE.md §3), and every reason has its French texts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from policy import messages_fr
from policy.decision import Reason

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"
OUR_PACKAGES = {"caducee", "mailstore", "smtp_gateway", "audit", "directory", "webmail",
                "attachments_bridge"}
IO_MODULES = {"socket", "ssl", "asyncio", "subprocess", "sqlalchemy", "urllib", "http",
              "requests", "httpx", "os", "shutil", "pathlib", "time", "logging", "random",
              "secrets", "threading"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(POLICY_DIR.glob("*.py")), ids=lambda p: p.name)
def test_policy_module_is_pure(path: Path) -> None:
    imported = _imports(path)
    assert not imported & OUR_PACKAGES, f"{path.name} imports {imported & OUR_PACKAGES}"
    assert not imported & IO_MODULES, f"{path.name} imports {imported & IO_MODULES}"
    source = path.read_text(encoding="utf-8")
    for clock in ("datetime.now(", ".utcnow(", "date.today(", "time.time("):
        assert clock not in source, f"{path.name} reads the clock ({clock})"
    assert "open(" not in source.replace("archive.open(", "").replace("_open(", "")


def test_every_reason_has_french_texts() -> None:
    for reason in Reason:
        for audience in ("patient", "admin"):
            text = messages_fr.explain(reason, audience=audience)
            assert text and text.strip() == text and text[-1] in ".!", (reason, audience)
    assert "écrit" in messages_fr.explain(Reason.PATIENT_NOT_CONTACTED)


def test_policy_doc_lists_every_reason() -> None:
    doc = (POLICY_DIR.parent / "docs" / "policy.md").read_text(encoding="utf-8")
    for reason in Reason:
        if reason is not Reason.OK:
            assert f"`{reason.value}`" in doc, reason
