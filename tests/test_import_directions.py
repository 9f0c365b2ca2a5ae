"""The import directions of ARCHITECTURE.md §3, for every package, read with ``ast``.

Every ``import`` and ``from … import`` counts, at any depth (inside functions and
``if TYPE_CHECKING:`` blocks too). The table below is §3's, with one deliberate deviation
documented in docs/architecture.md: ``policy`` is a pure leaf (it imports nothing of ours,
see tests/policy/test_purity_and_texts.py), so **any package may import it**.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: ARCHITECTURE.md §3: package → the packages of ours it may import.
ALLOWED: dict[str, frozenset[str]] = {
    "caducee": frozenset({"webmail", "smtp_gateway", "attachments_bridge", "mailstore",
                          "directory", "audit", "policy"}),
    "webmail": frozenset({"smtp_gateway", "policy", "mailstore", "directory",
                          "attachments_bridge", "audit"}),
    "smtp_gateway": frozenset({"policy", "mailstore", "directory", "audit",
                               "attachments_bridge"}),
    "attachments_bridge": frozenset({"policy", "mailstore", "audit"}),
    "mailstore": frozenset({"audit"}),
    "directory": frozenset({"audit"}),
    "audit": frozenset(),
    "policy": frozenset(),
}

#: The deviation: policy is pure and imports nothing of ours, so every package may use it.
UNIVERSAL_LEAF = "policy"

#: §3: "webmail ──► smtp_gateway (its delivery API only: sign, deliver, queue)".
WEBMAIL_SMTP_API = frozenset({"smtp_gateway.delivery", "smtp_gateway.patient_send",
                              "smtp_gateway.dkim_sign"})

#: Top-level directories that hold Python but are not packages of the product.
NOT_PACKAGES = {"tests", "benchmarks", "conf", "docs", "scripts"}


def packages_on_disk() -> set[str]:
    return {p.parent.name for p in ROOT.glob("*/__init__.py")
            if not p.parent.name.startswith(".") and p.parent.name not in NOT_PACKAGES}


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; relative imports are
    resolved to their absolute name (they stay inside ``package``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                out.append((node.lineno, package))
            elif node.module:
                out += [(node.lineno, node.module)]
                # ``from smtp_gateway import delivery`` imports the module smtp_gateway.delivery
                out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                        if node.module in ALLOWED]
    return out


def violations(package: str, root: Path = ROOT) -> list[str]:
    ours = set(ALLOWED)
    allowed = ALLOWED[package] | {package}
    if package != UNIVERSAL_LEAF:
        allowed = allowed | {UNIVERSAL_LEAF}
    found = []
    for path in sorted((root / package).rglob("*.py")):
        where = path.relative_to(root)
        for line, module in imported_modules(path, package):
            top = module.split(".")[0]
            if top not in ours:
                continue
            if top not in allowed:
                found.append(f"{where}:{line} imports {module}")
            elif package == "webmail" and top == "smtp_gateway" and module != "smtp_gateway" \
                    and not any(module == api or module.startswith(api + ".")
                                for api in WEBMAIL_SMTP_API):
                found.append(f"{where}:{line} imports {module} (not the delivery API)")
    return found


def test_every_package_is_in_the_table() -> None:
    assert packages_on_disk() <= set(ALLOWED), packages_on_disk() - set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_directions(package: str) -> None:
    if not (ROOT / package).is_dir():
        pytest.skip(f"{package}/ has no code yet")
    assert violations(package) == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The scan itself works: forbidden imports, even nested in a function, are reported;
    policy is allowed everywhere but in policy itself."""
    (tmp_path / "mailstore").mkdir()
    (tmp_path / "mailstore" / "mod.py").write_text(
        "from policy.decision import Reason\n"
        "def f():\n    from smtp_gateway import replies\n    import webmail.x\n")
    assert violations("mailstore", tmp_path) == [
        "mailstore/mod.py:3 imports smtp_gateway",
        "mailstore/mod.py:3 imports smtp_gateway.replies",
        "mailstore/mod.py:4 imports webmail.x",
    ]
    (tmp_path / "webmail").mkdir()
    (tmp_path / "webmail" / "app.py").write_text(
        "from smtp_gateway.patient_send import PatientSender\n"
        "from smtp_gateway import replies\n")
    assert violations("webmail", tmp_path) == [
        "webmail/app.py:2 imports smtp_gateway.replies (not the delivery API)"]
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "rule.py").write_text("from . import decision\nimport audit\n")
    assert violations("policy", tmp_path) == ["policy/rule.py:2 imports audit"]
