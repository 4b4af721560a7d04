"""Reading (and, for the simulator, writing) logged decisions in SQLite.

The offline evaluation reads the controller's ``decisions`` table. It needs, per
decision: the action, its probability, the logged features (JSON: ``state``,
``offered``, ``context`` as written by :class:`~otel_adaprof.controller.policy.vw.VWPolicy`)
and the credited reward (NULL until credited). Column names are matched leniently
(``features`` or ``features_json``; ``reward`` or ``reward_total``; ``probability`` or
``prob``) so the reader follows the controller's schema; :data:`SCHEMA` is the minimal
table the simulator writes with :func:`write_decisions`.

Usage::

    >>> import sqlite3
    >>> conn = sqlite3.connect(":memory:")
    >>> write_decisions(conn, "shop", [("off", 1.0, {"state": {}, "offered": ["off"]}, 0.5)])
    >>> [d.action for d in read_decisions(conn)]
    ['off']
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from otel_adaprof.controller.policy.features import context_dict
from otel_adaprof.controller.policy.offline import LoggedDecision
from otel_adaprof.errors import ContractError

#: The minimal decisions table (the controller's has more columns).
SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    action TEXT NOT NULL,
    probability REAL NOT NULL,
    features TEXT NOT NULL,
    reward REAL
)
"""

_ALIASES = {
    "action": ("action", "action_name"),
    "probability": ("probability", "prob", "propensity"),
    "features": ("features", "features_json"),
    "reward": ("reward", "reward_total"),
    "service": ("service", "service_name"),
}


def write_decisions(
    conn: sqlite3.Connection,
    service: str,
    rows: Iterable[tuple[str, float, Mapping[str, Any], float | None]],
) -> None:
    """Append ``(action, probability, features, reward)`` rows (simulator logs)."""
    conn.execute(SCHEMA)
    conn.executemany(
        "INSERT INTO decisions (service, action, probability, features, reward) "
        "VALUES (?, ?, ?, ?, ?)",
        [(service, a, p, json.dumps(f), r) for a, p, f, r in rows],
    )
    conn.commit()


def _columns(conn: sqlite3.Connection) -> dict[str, str]:
    names = [row[1] for row in conn.execute("PRAGMA table_info(decisions)")]
    if not names:
        raise ContractError([("decisions", "the database has no decisions table")])
    found: dict[str, str] = {}
    for role, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in names:
                found[role] = alias
                break
    missing = [r for r in ("action", "probability", "features", "reward") if r not in found]
    if missing:
        raise ContractError([(f"decisions.{missing[0]}", "column not found")])
    return found


#: Features a rule's decision logs (what chose the action instead of the model's draw).
RULES = ("forced", "settled", "learning", "saving")


def read_decisions(conn: sqlite3.Connection, service: str | None = None) -> list[LoggedDecision]:
    """Credited decisions (reward not NULL) with usable features, oldest first."""
    cols = _columns(conn)
    query = (
        f"SELECT {cols['action']}, {cols['probability']}, {cols['features']}, {cols['reward']} "
        f"FROM decisions WHERE {cols['reward']} IS NOT NULL"
    )
    args: list[Any] = []
    if service is not None and "service" in cols:
        query += f" AND {cols['service']} = ?"
        args.append(service)
    out: list[LoggedDecision] = []
    for action, prob, features, reward in conn.execute(query + " ORDER BY rowid", args):
        try:
            data = json.loads(features) if isinstance(features, (str, bytes)) else {}
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        state = data.get("state")
        offered = data.get("offered")
        if not isinstance(state, dict) or not isinstance(offered, list) or action not in offered:
            continue  # static decisions log no features: nothing to evaluate from
        context = data.get("context")
        rule = next((name for name in RULES if data.get(name)), "")
        out.append(
            LoggedDecision(
                state={k: float(v) for k, v in state.items()},
                offered=[str(a) for a in offered],
                action=str(action),
                probability=float(prob),
                reward=float(reward),
                context=(
                    {str(a): context_dict(v) for a, v in context.items()}
                    if isinstance(context, dict)
                    else {}
                ),
                rule=rule,
            )
        )
    return out
