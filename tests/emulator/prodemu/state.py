"""Process-wide emulator state that is not per account/region.

Everything here is guarded by one lock and cleared by ``reset()`` (wired into
``POST /moto-api/reset``).
"""

from __future__ import annotations

import collections
import datetime
import random
import threading
from typing import Any

LOCK = threading.RLock()

# --- clock -----------------------------------------------------------------
_clock_offset_seconds = 0.0


def now() -> datetime.datetime:
    """The emulator's notion of now (UTC, timezone-aware)."""
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=_clock_offset_seconds
    )


def set_clock_offset(seconds: float) -> None:
    global _clock_offset_seconds
    _clock_offset_seconds = float(seconds)


def clock_offset() -> float:
    return _clock_offset_seconds


# --- session credentials issued by sts:GetSessionToken ---------------------
class SessionKey:
    def __init__(
        self,
        access_key_id: str,
        secret: str,
        token: str,
        account_id: str,
        user_name: str,
        user_arn: str,
        mfa: bool,
        issued: datetime.datetime,
        expiration: datetime.datetime,
    ):
        self.access_key_id = access_key_id
        self.secret_access_key = secret
        self.session_token = token
        self.account_id = account_id
        self.user_name = user_name
        self.user_arn = user_arn
        self.mfa = mfa
        self.issued = issued
        self.expiration = expiration


SESSION_KEYS: dict[str, SessionKey] = {}

# Every access key id ever issued to an IAM user: key id -> (account, user name).
# Lets enforcement tell a deleted user key from bootstrap credentials.
ISSUED_USER_KEYS: dict[str, tuple[str, str]] = {}

# --- call log ----------------------------------------------------------------
CALL_LOG_MAX = 20000
CALLS: collections.deque[dict[str, Any]] = collections.deque(maxlen=CALL_LOG_MAX)
CALL_COUNTS: collections.Counter[str] = collections.Counter()
CALLS_TOTAL = 0


def record_call(entry: dict[str, Any]) -> None:
    global CALLS_TOTAL
    with LOCK:
        CALLS.append(entry)
        CALL_COUNTS[f"{entry['service']}:{entry['operation']}"] += 1
        CALLS_TOTAL += 1


def clear_calls() -> None:
    global CALLS_TOTAL
    with LOCK:
        CALLS.clear()
        CALL_COUNTS.clear()
        CALLS_TOTAL = 0


# --- fault rules -------------------------------------------------------------
FAULT_KINDS = {
    "throttle",
    "http500",
    "http503",
    "reset",
    "delay",
    "prior_request_not_complete",
}


class FaultRule:
    _next_id = 1

    def __init__(self, spec: dict[str, Any]):
        self.id = FaultRule._next_id
        FaultRule._next_id += 1
        self.service = str(spec.get("service", "*"))
        self.operation = str(spec.get("operation", "*"))
        self.kind = str(spec.get("kind", "throttle"))
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(FAULT_KINDS)}")
        self.count = spec.get("count")
        self.probability = spec.get("probability")
        if self.count is None and self.probability is None:
            self.count = 1
        if self.count is not None:
            self.count = int(self.count)
        if self.probability is not None:
            self.probability = float(self.probability)
        self.delay_ms = int(spec.get("delay_ms", 0))
        self.account = spec.get("account")
        self.hits = 0
        self.seen = 0

    def matches(self, service: str, operation: str, account: str) -> bool:
        if self.service not in ("*", service):
            return False
        if self.operation not in ("*", operation):
            return False
        if self.account and self.account != account:
            return False
        return True

    def fire(self) -> bool:
        """Decide (under LOCK) whether this rule fires for a matching call."""
        self.seen += 1
        if self.count is not None:
            if self.hits >= self.count:
                return False
            if self.probability is not None and random.random() >= self.probability:
                return False
        elif random.random() >= (self.probability or 0.0):
            return False
        self.hits += 1
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "operation": self.operation,
            "kind": self.kind,
            "count": self.count,
            "probability": self.probability,
            "delay_ms": self.delay_ms,
            "account": self.account,
            "hits": self.hits,
            "seen": self.seen,
            "exhausted": self.count is not None and self.hits >= self.count,
        }


FAULTS: list[FaultRule] = []


def pick_fault(service: str, operation: str, account: str) -> FaultRule | None:
    with LOCK:
        for rule in FAULTS:
            if rule.matches(service, operation, account) and rule.fire():
                return rule
    return None


# --- per-thread request flags -----------------------------------------------
THREAD = threading.local()


def reset() -> None:
    """Clear everything except the enforcement switch (moto keeps that too)."""
    set_clock_offset(0)
    with LOCK:
        SESSION_KEYS.clear()
        ISSUED_USER_KEYS.clear()
        FAULTS.clear()
    clear_calls()
