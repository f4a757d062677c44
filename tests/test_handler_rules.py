"""Rules every Telegram handler keeps, checked on the source: what an update changes, it changes
inside `exactly_once.effects` (which claims the update in the same transaction), so an update
delivered twice changes nothing twice. A handler that only reads uses `db.read()`."""

from __future__ import annotations

import ast
from pathlib import Path

HANDLERS = Path(__file__).resolve().parent.parent / "bot" / "handlers"
# Write transactions outside `effects`, each with its reason.
ALLOWED = {
    # Strangers' counts: nothing about a stranger is written to the ledger (bot/exactly_once.py).
    ("onboarding.py", "_locked_out"),
    ("onboarding.py", "_invite_problem"),
    # The confirmation's second step, after the update was claimed with the first (and answered).
    ("broadcast.py", "confirm_or_cancel"),
}


def _write_transactions() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(HANDLERS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "transaction"):
                    found.append((path.name, function.name, node.lineno))
    return found


def test_handlers_write_only_inside_effects() -> None:
    stray = [(f, fn, line) for f, fn, line in _write_transactions() if (f, fn) not in ALLOWED]
    assert stray == [], f"write transactions outside exactly_once.effects: {stray}"


def test_the_allowed_exceptions_still_exist() -> None:
    """An exception that no longer exists is removed from the list (so the list stays true)."""
    assert {(f, fn) for f, fn, _ in _write_transactions()} >= ALLOWED
