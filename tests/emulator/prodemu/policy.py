"""IAM identity-policy evaluation with a per-request context.

Semantics follow AWS's documented evaluation logic for identity-based policies
in one account: an explicit Deny in any statement wins; otherwise an Allow is
needed for every resource the request touches; otherwise implicit deny.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
from typing import Any, Iterable

# Result of evaluating one request against one resource.
ALLOW = "allow"
EXPLICIT_DENY = "explicit_deny"
IMPLICIT_DENY = "implicit_deny"

_VAR_RE = re.compile(r"\$\{([^}]+)\}")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _glob_to_regex(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    flags = re.DOTALL | (re.IGNORECASE if case_insensitive else 0)
    return re.compile("^" + "".join(out) + "$", flags)


def glob_match(pattern: str, value: str, case_insensitive: bool = False) -> bool:
    return _glob_to_regex(pattern, case_insensitive).match(value) is not None


def substitute_variables(text: str, context: dict[str, Any]) -> str:
    """Replace ${aws:username}-style policy variables (and ${*}, ${?}, ${$})."""

    def repl(m: re.Match[str]) -> str:
        inner = m.group(1)
        if inner in ("*", "?", "$"):
            return inner
        key, _, default = inner.partition(",")
        key = key.strip()
        for k, v in context.items():
            if k.lower() == key.lower():
                return str(v[0] if isinstance(v, list) else v)
        if default:
            return default.strip().strip("'")
        return m.group(0)  # unresolvable: stays literal, matches nothing useful

    return _VAR_RE.sub(repl, text)


def _parse_date(value: Any) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        d = value
    else:
        s = str(value).strip()
        if re.fullmatch(r"-?\d+(\.\d+)?", s):
            return datetime.datetime.fromtimestamp(float(s), datetime.timezone.utc)
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        try:
            d = datetime.datetime.fromisoformat(s)
        except ValueError:
            return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return d


def _to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _bool_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def _single_match(op: str, ctx_value: Any, cond_value: Any, context: dict[str, Any]) -> bool:
    """Does one context value satisfy one policy value under a non-negated operator?"""
    cv = cond_value
    if isinstance(cv, str):
        cv = substitute_variables(cv, context)
    if op == "StringEquals":
        return str(ctx_value) == str(cv)
    if op == "StringEqualsIgnoreCase":
        return str(ctx_value).lower() == str(cv).lower()
    if op == "StringLike":
        return glob_match(str(cv), str(ctx_value))
    if op in ("ArnEquals", "ArnLike"):
        return glob_match(str(cv), str(ctx_value))
    if op == "Bool":
        return _bool_str(ctx_value) == _bool_str(cv)
    if op.startswith("Numeric"):
        a, b = _to_float(ctx_value), _to_float(cv)
        if a is None or b is None:
            return False
        return {
            "NumericEquals": a == b,
            "NumericLessThan": a < b,
            "NumericLessThanEquals": a <= b,
            "NumericGreaterThan": a > b,
            "NumericGreaterThanEquals": a >= b,
        }.get(op, False)
    if op.startswith("Date"):
        a, b = _parse_date(ctx_value), _parse_date(cv)
        if a is None or b is None:
            return False
        return {
            "DateEquals": a == b,
            "DateLessThan": a < b,
            "DateLessThanEquals": a <= b,
            "DateGreaterThan": a > b,
            "DateGreaterThanEquals": a >= b,
        }.get(op, False)
    if op == "IpAddress":
        try:
            return ipaddress.ip_address(str(ctx_value)) in ipaddress.ip_network(str(cv), strict=False)
        except ValueError:
            return False
    if op == "BinaryEquals":
        return str(ctx_value) == str(cv)
    raise UnsupportedOperator(op)


class UnsupportedOperator(Exception):
    pass


_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "NumericNotEquals": "NumericEquals",
    "DateNotEquals": "DateEquals",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NotIpAddress": "IpAddress",
}


def _lookup(context: dict[str, Any], key: str) -> list[Any] | None:
    # Condition keys are case-insensitive; tag keys inside them we compare case-insensitively too.
    lk = key.lower()
    for k, v in context.items():
        if k.lower() == lk:
            return _as_list(v)
    return None


def evaluate_condition_block(conditions: dict[str, Any], context: dict[str, Any]) -> bool:
    """All operators AND together; within one operator all keys AND; values of one key OR."""
    for raw_op, keys in (conditions or {}).items():
        op = raw_op
        set_mode = None
        if op.startswith("ForAnyValue:"):
            set_mode, op = "any", op[len("ForAnyValue:"):]
        elif op.startswith("ForAllValues:"):
            set_mode, op = "all", op[len("ForAllValues:"):]
        if_exists = op.endswith("IfExists")
        if if_exists:
            op = op[: -len("IfExists")]
        for key, policy_values in (keys or {}).items():
            values = _as_list(policy_values)
            ctx = _lookup(context, key)
            if op == "Null":
                want_null = _bool_str(values[0]) == "true"
                if (ctx is None) != want_null:
                    return False
                continue
            if ctx is None:
                if if_exists or set_mode == "all":
                    continue
                if op in _NEGATED:
                    # AWS: a negated operator on a missing key evaluates to true.
                    continue
                return False
            negated = op in _NEGATED
            base = _NEGATED.get(op, op)

            def one(cval: Any) -> bool:
                hit = any(_single_match(base, cval, pv, context) for pv in values)
                return (not hit) if negated else hit

            if set_mode == "all":
                ok = all(one(c) for c in ctx)
            else:
                ok = any(one(c) for c in ctx)
            if not ok:
                return False
    return True


def _statement_list(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        document = json.loads(document)
    stmts = document.get("Statement", [])
    if isinstance(stmts, dict):
        stmts = [stmts]
    return stmts


def _action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(glob_match(p, action, case_insensitive=True) for p in patterns)


def _resource_matches(patterns: Iterable[str], resource: str, context: dict[str, Any]) -> bool:
    for p in patterns:
        p = substitute_variables(p, context)
        if p == "*" or glob_match(p, resource):
            return True
    return False


def statement_applies(
    stmt: dict[str, Any], action: str, resource: str, context: dict[str, Any]
) -> bool:
    if "Action" in stmt:
        if not _action_matches(_as_list(stmt["Action"]), action):
            return False
    elif "NotAction" in stmt:
        if _action_matches(_as_list(stmt["NotAction"]), action):
            return False
    else:
        return False
    if "Resource" in stmt:
        if not _resource_matches(_as_list(stmt["Resource"]), resource, context):
            return False
    elif "NotResource" in stmt:
        if _resource_matches(_as_list(stmt["NotResource"]), resource, context):
            return False
    else:
        return False
    return evaluate_condition_block(stmt.get("Condition") or {}, context)


def evaluate(
    documents: list[Any],
    action: str,
    resource: str,
    context: dict[str, Any],
) -> str:
    allowed = False
    for doc in documents:
        for stmt in _statement_list(doc):
            effect = stmt.get("Effect")
            try:
                applies = statement_applies(stmt, action, resource, context)
            except UnsupportedOperator:
                # Unknown operator: a Deny is treated as applying (fail closed),
                # an Allow as not applying.
                applies = effect == "Deny"
            if not applies:
                continue
            if effect == "Deny":
                return EXPLICIT_DENY
            if effect == "Allow":
                allowed = True
    return ALLOW if allowed else IMPLICIT_DENY


__all__ = [
    "evaluate",
    "evaluate_condition_block",
    "glob_match",
    "ALLOW",
    "EXPLICIT_DENY",
    "IMPLICIT_DENY",
]
