"""Errors of the shared contract, and how validation failures are worded.

Every place where data enters otel-adaprof (an HTTP body, a config file, a poll
response, py-spy output) turns a failure into a :class:`ContractError` whose message
names the field, the value and what was allowed::

    >>> from otel_adaprof.params import Params
    >>> try:
    ...     Params.parse({"trace_ratio": 1.5})
    ... except ContractError as exc:
    ...     print(exc)
    trace_ratio: 1.5 is out of bounds, allowed range is [0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError


class ContractError(ValueError):
    """Input that does not satisfy the otel-adaprof contract.

    ``field`` is the dotted path of the first offending field (``""`` when the whole
    document is wrong); ``problems`` lists every ``(field, reason)`` found.
    """

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        if not problems:
            problems = [("", "invalid input")]
        self.problems: list[tuple[str, str]] = list(problems)
        self.field: str = self.problems[0][0]
        super().__init__("; ".join(_join(f, r) for f, r in self.problems))

    def to_json(self) -> dict[str, Any]:
        """The error body the controller sends (``{"error", "message", "field", "problems"}``)."""
        return {
            "error": "invalid_request",
            "message": str(self),
            "field": self.field,
            "problems": [{"field": f, "reason": r} for f, r in self.problems],
        }


class UnsupportedProtocolVersion(ContractError):
    """A message declared a protocol version this build does not speak."""


def _join(field: str, reason: str) -> str:
    return f"{field}: {reason}" if field else reason


def _loc(loc: Sequence[int | str], prefix: str) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts).replace(".[", "[")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def from_validation_error(exc: ValidationError, prefix: str = "") -> ContractError:
    """Turn a pydantic ``ValidationError`` into a :class:`ContractError` with plain wording.

    ``prefix`` is prepended to every field path (e.g. ``"params"`` for a nested document).
    """
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        field = _loc(loc, prefix)
        kind = err["type"]
        ctx = err.get("ctx") or {}
        value = err.get("input")
        if kind == "extra_forbidden":
            reason = "unknown field"
        elif kind == "missing":
            reason = "required field is missing"
        elif kind == "value_error":
            reason = str(ctx.get("error", err["msg"]))
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            reason = f"{_short(value)} is out of bounds ({err['msg'].lower()})"
        elif kind in ("too_long", "too_short", "string_too_long", "string_too_short"):
            reason = f"{err['msg'].lower()}"
        else:
            reason = f"{err['msg']} (got {_short(value)})"
        problems.append((field, reason))
    return ContractError(problems)
