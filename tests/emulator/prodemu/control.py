"""WSGI middleware: our control API under /_prodemu/, everything else to moto."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Callable, Iterable

from moto.moto_api._internal.models import MotoAPIBackend

from . import enforcement, ssm_ext, state

PREFIX = "/_prodemu/"


def _json(start_response: Callable[..., Any], status: int, payload: Any) -> list[bytes]:
    body = json.dumps(payload, default=str).encode()
    reason = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "OK")
    start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _read_json(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw.strip():
        return {}
    return json.loads(raw)


def handle_control(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "")[len(PREFIX):].strip("/")
    try:
        body = _read_json(environ) if method in ("POST", "PUT") else {}
    except ValueError as e:
        return _json(start_response, 400, {"error": f"invalid JSON: {e}"})
    try:
        if path == "health":
            return _json(start_response, 200, {"ok": True})
        if path == "enforcement":
            if method == "POST":
                enforcement.set_enforcement(bool(body.get("enabled", True)))
            return _json(start_response, 200, {"enabled": enforcement.enforcement_active()})
        if path == "faults":
            if method == "POST":
                specs = body if isinstance(body, list) else body.get("rules", [body]) if isinstance(body, dict) else []
                created = []
                with state.LOCK:
                    for spec in specs:
                        rule = state.FaultRule(spec)
                        state.FAULTS.append(rule)
                        created.append(rule.to_dict())
                return _json(start_response, 201, {"rules": created})
            if method == "DELETE":
                with state.LOCK:
                    state.FAULTS.clear()
                return _json(start_response, 200, {"rules": []})
            with state.LOCK:
                return _json(start_response, 200, {"rules": [r.to_dict() for r in state.FAULTS]})
        if path == "calls":
            if method == "DELETE":
                state.clear_calls()
                return _json(start_response, 200, {"total": 0})
            qs = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
            with state.LOCK:
                calls = list(state.CALLS)
                counts = dict(state.CALL_COUNTS)
                total = state.CALLS_TOTAL
            for key in ("service", "operation", "account", "caller"):
                if key in qs:
                    from urllib.parse import unquote

                    want = unquote(qs[key])
                    calls = [c for c in calls if c.get(key) == want]
            if qs.get("detail") == "false":
                calls = []
            return _json(start_response, 200, {"total": total, "counts": counts, "calls": calls})
        if path == "clock":
            if method == "POST":
                if "offset_seconds" in body:
                    state.set_clock_offset(float(body["offset_seconds"]))
                elif "advance_seconds" in body:
                    state.set_clock_offset(state.clock_offset() + float(body["advance_seconds"]))
            return _json(start_response, 200, {"offset_seconds": state.clock_offset(), "now": state.now().isoformat()})
        if path.startswith("executions"):
            parts = path.split("/")
            if len(parts) == 1:
                rows = []
                for b in ssm_ext.all_backends():
                    with b.lock:
                        for e in b.executions.values():
                            rows.append(_execution_summary(b, e))
                return _json(start_response, 200, {"executions": rows})
            eid = parts[1]
            found = ssm_ext.find_execution(eid)
            if found is None:
                return _json(start_response, 404, {"error": f"no execution {eid}"})
            b, e = found
            if method == "POST":
                status = body.get("status")
                if status not in ("Cancelled", "TimedOut", "Failed"):
                    return _json(start_response, 400, {"error": "status must be Cancelled, TimedOut or Failed"})
                with b.lock:
                    ssm_ext.set_terminal(e, status, body.get("message"))
            with b.lock:
                return _json(start_response, 200, _execution_summary(b, e))
        return _json(start_response, 404, {"error": f"unknown control path /{PREFIX.strip('/')}/{path}"})
    except ValueError as e:
        return _json(start_response, 400, {"error": str(e)})


def _execution_summary(b: Any, e: Any) -> dict[str, Any]:
    return {
        "account": b.account_id,
        "region": b.region_name,
        "id": e.id,
        "document": e.document_name,
        "status": e.status,
        "subtype": e.subtype,
        "executed_by": e.executed_by,
        "scheduled_time": e.scheduled_time,
        "scheduled_end_time": e.scheduled_end_time,
        "decisions": e.decisions,
    }


def _hard_reset(environ: dict[str, Any]) -> None:
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class ControlMiddleware:
    def __init__(self, app: Callable[..., Any]):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX):
            return handle_control(environ, start_response)
        state.THREAD.reset = False
        result = self.app(environ, start_response)
        if getattr(state.THREAD, "reset", False):
            state.THREAD.reset = False
            _hard_reset(environ)
        return result


_orig_moto_reset = MotoAPIBackend.reset


def _moto_reset(self: Any) -> None:
    _orig_moto_reset(self)
    state.reset()


def apply() -> None:
    MotoAPIBackend.reset = _moto_reset  # type: ignore[method-assign]
