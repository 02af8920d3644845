"""SSM Change Manager, Automation approvals and Session Manager sessions.

Methods are attached to moto's SimpleSystemManagerResponse (awsJson1_1); state
lives in ``prodemu_ssm_backends[account][region]``.
"""

from __future__ import annotations

import copy
import datetime
import json
import secrets
import threading
import uuid
from typing import Any

from moto.core.base_backend import BackendDict, BaseBackend
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.iam.models import iam_backends
from moto.ssm.models import ssm_backends
from moto.ssm.responses import SimpleSystemManagerResponse

from . import enforcement, state

TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled", "Rejected", "CompletedWithSuccess", "CompletedWithFailure"}


class SSMError(ServiceException):
    def __init__(self, code: str, message: str):
        super().__init__(code, message)


def _ts(d: datetime.datetime | None) -> datetime.datetime | None:
    return d


class Execution:
    def __init__(self, **kw: Any):
        self.id: str = kw["id"]
        self.document_name: str = kw["document_name"]
        self.document_version: str = kw.get("document_version") or "1"
        self.status: str = kw["status"]
        self.start: datetime.datetime = kw["start"]
        self.end: datetime.datetime | None = None
        self.executed_by: str = kw["executed_by"]
        self.parameters: dict[str, list[str]] = kw.get("parameters") or {}
        self.mode: str = kw.get("mode") or "Auto"
        self.subtype: str | None = kw.get("subtype")
        self.change_request_name: str | None = kw.get("change_request_name")
        self.scheduled_time: datetime.datetime | None = kw.get("scheduled_time")
        self.scheduled_end_time: datetime.datetime | None = kw.get("scheduled_end_time")
        self.runbooks: list[dict[str, Any]] | None = kw.get("runbooks")
        self.client_token: str | None = kw.get("client_token")
        self.tags: list[dict[str, str]] = kw.get("tags") or []
        self.steps: list[dict[str, Any]] = kw.get("steps") or []
        self.approve_index: int | None = kw.get("approve_index")
        self.min_approvals: int = kw.get("min_approvals", 1)
        self.approvers: list[str] = kw.get("approvers") or []
        self.decisions: list[dict[str, str]] = []
        self.failure_message: str | None = None
        self.request_fingerprint: str = kw.get("fingerprint", "")

    # ---- views
    def current_step(self) -> dict[str, Any] | None:
        for s in self.steps:
            if s.get("StepStatus") in ("Waiting", "InProgress", "Pending"):
                return s
        return None

    def to_full(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "AutomationExecutionId": self.id,
            "DocumentName": self.document_name,
            "DocumentVersion": self.document_version,
            "ExecutionStartTime": self.start,
            "AutomationExecutionStatus": self.status,
            "StepExecutions": copy.deepcopy(self.steps),
            "StepExecutionsTruncated": False,
            "Parameters": self.parameters,
            "Outputs": {},
            "Mode": self.mode,
            "ExecutedBy": self.executed_by,
        }
        if self.end:
            d["ExecutionEndTime"] = self.end
        if self.failure_message:
            d["FailureMessage"] = self.failure_message
        cur = self.current_step()
        if cur and self.status not in TERMINAL:
            d["CurrentStepName"] = cur["StepName"]
            d["CurrentAction"] = cur["Action"]
        d["ProgressCounters"] = {
            "TotalSteps": len(self.steps),
            "SuccessSteps": sum(1 for s in self.steps if s.get("StepStatus") == "Success"),
            "FailedSteps": sum(1 for s in self.steps if s.get("StepStatus") == "Failed"),
            "CancelledSteps": sum(1 for s in self.steps if s.get("StepStatus") == "Cancelled"),
            "TimedOutSteps": sum(1 for s in self.steps if s.get("StepStatus") == "TimedOut"),
        }
        if self.subtype:
            d["AutomationSubtype"] = self.subtype
        if self.change_request_name:
            d["ChangeRequestName"] = self.change_request_name
        if self.scheduled_time:
            d["ScheduledTime"] = self.scheduled_time
        if self.runbooks is not None:
            d["Runbooks"] = self.runbooks
        return d

    def to_metadata(self) -> dict[str, Any]:
        full = self.to_full()
        keep = [
            "AutomationExecutionId", "DocumentName", "DocumentVersion", "AutomationExecutionStatus",
            "ExecutionStartTime", "ExecutionEndTime", "ExecutedBy", "Outputs", "Mode",
            "CurrentStepName", "CurrentAction", "FailureMessage", "AutomationSubtype",
            "ScheduledTime", "Runbooks", "ChangeRequestName",
        ]
        d = {k: full[k] for k in keep if k in full}
        d["AutomationType"] = "Local"
        return d


class Session:
    def __init__(self, session_id: str, target: str, document: str, owner: str, reason: str | None, params: dict[str, Any]):
        self.id = session_id
        self.target = target
        self.document = document
        self.owner = owner
        self.reason = reason
        self.params = params
        self.status = "Connected"
        self.start = state.now()
        self.end: datetime.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "SessionId": self.id,
            "Target": self.target,
            "Status": self.status,
            "StartDate": self.start,
            "DocumentName": self.document,
            "Owner": self.owner,
            "AccessType": "Standard",
        }
        if self.reason:
            d["Reason"] = self.reason
        if self.end:
            d["EndDate"] = self.end
        return d


class ProdemuSSMBackend(BaseBackend):
    def __init__(self, region_name: str, account_id: str):
        super().__init__(region_name, account_id)
        self.lock = threading.RLock()
        self.executions: dict[str, Execution] = {}
        self.tokens: dict[tuple[str, str], str] = {}
        self.sessions: dict[str, Session] = {}


prodemu_ssm_backends = BackendDict(ProdemuSSMBackend, "ssm")


def all_backends() -> list[ProdemuSSMBackend]:
    out = []
    for acct in list(prodemu_ssm_backends.keys()):
        for region, b in list(prodemu_ssm_backends[acct].items()):
            out.append(b)
    return out


def find_execution(execution_id: str) -> tuple[ProdemuSSMBackend, Execution] | None:
    for b in all_backends():
        e = b.executions.get(execution_id)
        if e is not None:
            return b, e
    return None


# ------------------------------------------------------------------ helpers
def _parse_time(value: Any) -> datetime.datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc)
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    s = str(value)
    try:
        return datetime.datetime.fromtimestamp(float(s), datetime.timezone.utc)
    except ValueError:
        pass
    d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return d if d.tzinfo else d.replace(tzinfo=datetime.timezone.utc)


def _document(resp: SimpleSystemManagerResponse, name: str, version: str | None) -> Any:
    backend = ssm_backends[resp.current_account][resp.region]
    docs = backend._documents.get(name) or backend._documents.get(name.rsplit("/", 1)[-1])
    if docs is None:
        return None
    if version and version not in ("$DEFAULT", "$LATEST"):
        return docs.find_by_version(version) or docs.get_default_version()
    if version == "$LATEST":
        return docs.get_latest_version()
    return docs.get_default_version()


def _substitute(value: Any, params: dict[str, list[str]]) -> Any:
    if isinstance(value, str):
        for k, v in params.items():
            token = "{{ " + k + " }}"
            token2 = "{{" + k + "}}"
            if value.strip() in (token, token2):
                return v if len(v) != 1 else v[0]
            value = value.replace(token, ",".join(v)).replace(token2, ",".join(v))
        return value
    if isinstance(value, list):
        out: list[Any] = []
        for x in value:
            r = _substitute(x, params)
            out.extend(r if isinstance(r, list) and isinstance(x, str) else [r])
        return out
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    return value


def _build_steps(content: dict[str, Any], params: dict[str, list[str]], now: datetime.datetime) -> tuple[list[dict[str, Any]], int | None, int, list[str]]:
    steps: list[dict[str, Any]] = []
    approve_index = None
    min_approvals = 1
    approvers: list[str] = []
    declared = content.get("parameters") or {}
    if isinstance(declared, dict):
        merged: dict[str, list[str]] = {}
        for k, spec in declared.items():
            if isinstance(spec, dict) and "default" in spec:
                dv = spec["default"]
                merged[k] = [str(x) for x in (dv if isinstance(dv, list) else [dv])]
        merged.update(params)
        params = merged
    for i, s in enumerate(content.get("mainSteps") or []):
        action = s.get("action", "")
        inputs = _substitute(s.get("inputs") or {}, params)
        step = {
            "StepName": s.get("name", f"step{i + 1}"),
            "Action": action,
            "OnFailure": s.get("onFailure", "Abort"),
            "MaxAttempts": int(s.get("maxAttempts", 1)),
            "StepStatus": "Pending",
            "Inputs": {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in inputs.items()},
            "StepExecutionId": str(uuid.uuid4()),
            "Outputs": {},
            "IsEnd": bool(s.get("isEnd", False)),
            "IsCritical": bool(s.get("isCritical", True)),
        }
        if "timeoutSeconds" in s:
            step["TimeoutSeconds"] = int(s["timeoutSeconds"])
        if action == "aws:approve" and approve_index is None:
            approve_index = i
            try:
                min_approvals = int(inputs.get("MinRequiredApprovals", 1))
            except (TypeError, ValueError):
                min_approvals = 1
            a = inputs.get("Approvers") or []
            approvers = [a] if isinstance(a, str) else [str(x) for x in a]
            approvers = [x for x in approvers if x and x.strip()]
        steps.append(step)
    return steps, approve_index, min_approvals, approvers


def _start_steps(e: Execution, now: datetime.datetime, waiting_status: str) -> None:
    """Run steps up to the approval step (instantly) and park there."""
    for i, s in enumerate(e.steps):
        if e.approve_index is not None and i == e.approve_index:
            s["StepStatus"] = "Waiting"
            s["ExecutionStartTime"] = now
            s["Outputs"] = {"ApprovalStatus": ["Waiting"]}
            e.status = waiting_status
            return
        s["StepStatus"] = "Success"
        s["ExecutionStartTime"] = now
        s["ExecutionEndTime"] = now
    e.status = "Success"
    e.end = now


def _finish_remaining(e: Execution, now: datetime.datetime, after: int) -> None:
    for s in e.steps[after + 1 :]:
        s["StepStatus"] = "Success"
        s["ExecutionStartTime"] = now
        s["ExecutionEndTime"] = now


def _advance_time(e: Execution) -> None:
    """Lazy time-based transitions (Scheduled -> Success at ScheduledTime)."""
    if e.status == "Scheduled" and e.scheduled_time and state.now() >= e.scheduled_time:
        now = state.now()
        if e.approve_index is not None:
            _finish_remaining(e, now, e.approve_index)
        e.status = "Success"
        e.end = now


def _caller(resp: SimpleSystemManagerResponse) -> str:
    return enforcement.caller_arn_for_key(resp.get_access_key(), resp.current_account, resp.region)


def _is_approver(caller_arn: str, approvers: list[str], account: str, region: str) -> bool:
    if not approvers:
        return True
    for a in approvers:
        if a == caller_arn or a == "*":
            return True
        if ":group/" in a and ":user/" in caller_arn:
            user_name = caller_arn.rsplit("/", 1)[-1]
            group_name = a.rsplit("/", 1)[-1]
            try:
                b = iam_backends[account]["aws"]
                if any(g.name == group_name for g in b.get_groups_for_user(user_name)):
                    return True
            except Exception:
                pass
        if ":role/" in a and ":assumed-role/" in caller_arn:
            role_name = a.rsplit("/", 1)[-1]
            if caller_arn.split(":assumed-role/", 1)[1].split("/")[0] == role_name:
                return True
    return False


# ------------------------------------------------------------------ API methods
def _backend(self: SimpleSystemManagerResponse) -> ProdemuSSMBackend:
    return prodemu_ssm_backends[self.current_account][self.region]


def _params(self: SimpleSystemManagerResponse) -> dict[str, Any]:
    try:
        return json.loads(self.body or "{}")
    except Exception:
        return {}


def _fingerprint(p: dict[str, Any]) -> str:
    q = {k: v for k, v in p.items() if k != "ClientToken"}
    return json.dumps(q, sort_keys=True, default=str)


def start_automation_execution(self: SimpleSystemManagerResponse) -> ActionResult:
    p = _params(self)
    b = _backend(self)
    name = p["DocumentName"]
    token = p.get("ClientToken")
    with b.lock:
        if token and ("auto", token) in b.tokens:
            existing = b.executions[b.tokens[("auto", token)]]
            if existing.request_fingerprint != _fingerprint(p):
                raise SSMError("IdempotentParameterMismatch", "Error: Request parameters don't match the original request.")
            return ActionResult({"AutomationExecutionId": existing.id})
        doc = _document(self, name, p.get("DocumentVersion"))
        if doc is None:
            raise SSMError("AutomationDefinitionNotFoundException", f"Document with name {name} does not exist.")
        params = {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in (p.get("Parameters") or {}).items()}
        now = state.now()
        steps, ai, mina, approvers = _build_steps(doc.content_json or {}, params, now)
        e = Execution(
            id=str(uuid.uuid4()), document_name=name, document_version=doc.document_version,
            status="InProgress", start=now, executed_by=_caller(self), parameters=params,
            mode=p.get("Mode") or "Auto", client_token=token, tags=p.get("Tags"),
            steps=steps, approve_index=ai, min_approvals=mina, approvers=approvers,
            fingerprint=_fingerprint(p),
        )
        _start_steps(e, now, "Waiting")
        b.executions[e.id] = e
        if token:
            b.tokens[("auto", token)] = e.id
    return ActionResult({"AutomationExecutionId": e.id})


def start_change_request_execution(self: SimpleSystemManagerResponse) -> ActionResult:
    p = _params(self)
    b = _backend(self)
    name = p["DocumentName"]
    token = p.get("ClientToken")
    with b.lock:
        if token and ("cr", token) in b.tokens:
            existing = b.executions[b.tokens[("cr", token)]]
            if existing.request_fingerprint != _fingerprint(p):
                raise SSMError("IdempotentParameterMismatch", "Error: Request parameters don't match the original request.")
            return ActionResult({"AutomationExecutionId": existing.id})
        doc = _document(self, name, p.get("DocumentVersion"))
        if doc is None:
            raise SSMError("AutomationDefinitionNotFoundException", f"Document with name {name} does not exist.")
        if not p.get("Runbooks"):
            raise SSMError("ValidationException", "1 validation error detected: Value null at 'runbooks' failed to satisfy constraint: Member must not be null")
        params = {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in (p.get("Parameters") or {}).items()}
        now = state.now()
        content = doc.content_json or {}
        steps, ai, mina, approvers = _build_steps(content, params, now)
        if ai is None:
            steps.insert(0, {
                "StepName": "ApproveChangeRequest", "Action": "aws:approve", "OnFailure": "Abort",
                "MaxAttempts": 1, "StepStatus": "Pending", "Inputs": {}, "Outputs": {},
                "StepExecutionId": str(uuid.uuid4()), "IsEnd": False, "IsCritical": True,
            })
            ai = 0
        e = Execution(
            id=str(uuid.uuid4()), document_name=name, document_version=doc.document_version,
            status="PendingApproval", start=now, executed_by=_caller(self), parameters=params,
            mode="Auto", subtype="ChangeRequest", change_request_name=p.get("ChangeRequestName"),
            scheduled_time=_parse_time(p.get("ScheduledTime")), scheduled_end_time=_parse_time(p.get("ScheduledEndTime")),
            runbooks=p.get("Runbooks"), client_token=token, tags=p.get("Tags"),
            steps=steps, approve_index=ai, min_approvals=mina, approvers=approvers,
            fingerprint=_fingerprint(p),
        )
        if p.get("AutoApprove"):
            e.approve_index = None
            for s in e.steps:
                if s["Action"] == "aws:approve":
                    s["StepStatus"] = "Success"
                    s["Outputs"] = {"ApprovalStatus": ["Approved"], "ApproverDecisions": []}
            _approved(e, now)
        else:
            _start_steps(e, now, "PendingApproval")
        b.executions[e.id] = e
        if token:
            b.tokens[("cr", token)] = e.id
    return ActionResult({"AutomationExecutionId": e.id})


def _approved(e: Execution, now: datetime.datetime) -> None:
    if e.subtype == "ChangeRequest":
        if e.scheduled_time and e.scheduled_time > now:
            e.status = "Scheduled"
            return
    if e.approve_index is not None:
        _finish_remaining(e, now, e.approve_index)
    else:
        for s in e.steps:
            if s.get("StepStatus") == "Pending":
                s["StepStatus"] = "Success"
                s["ExecutionStartTime"] = now
                s["ExecutionEndTime"] = now
    e.status = "Success"
    e.end = now


def send_automation_signal(self: SimpleSystemManagerResponse) -> ActionResult:
    p = _params(self)
    b = _backend(self)
    eid = p["AutomationExecutionId"]
    signal = p["SignalType"]
    payload = p.get("Payload") or {}
    with b.lock:
        e = b.executions.get(eid)
        if e is None:
            raise SSMError("AutomationExecutionNotFoundException", f"Automation Execution with Id {eid} not found.")
        _advance_time(e)
        if signal not in ("Approve", "Reject"):
            raise SSMError("InvalidAutomationSignalException", f"Signal {signal} is not supported by this emulator for execution {eid}.")
        waiting = e.approve_index is not None and e.steps[e.approve_index]["StepStatus"] == "Waiting"
        if e.status in TERMINAL or not waiting:
            raise SSMError(
                "InvalidAutomationSignalException",
                f"Automation execution {eid} is not waiting for approval; current status is {e.status}.",
            )
        caller = _caller(self)
        if not _is_approver(caller, e.approvers, self.current_account, self.region):
            raise SSMError(
                "InvalidAutomationSignalException",
                f"{caller} is not an approver of automation execution {eid}.",
            )
        now = state.now()
        comment = payload.get("Comment")
        if isinstance(comment, list):
            comment = comment[0] if comment else None
        decision = {
            "Approver": caller,
            "Decision": signal,
            "ApprovalDecisionTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if comment is not None:
            decision["Comment"] = str(comment)
        e.decisions.append(decision)
        step = e.steps[e.approve_index]
        step["Outputs"] = {
            "ApproverDecisions": [json.dumps(d) for d in e.decisions],
        }
        if signal == "Reject":
            step["StepStatus"] = "Failed"
            step["ExecutionEndTime"] = now
            step["Outputs"]["ApprovalStatus"] = ["Rejected"]
            step["FailureMessage"] = "Step fails when it is Rejected by the approver."
            for s in e.steps[e.approve_index + 1 :]:
                s["StepStatus"] = "Cancelled" if e.subtype != "ChangeRequest" else "Pending"
            e.end = now
            if e.subtype == "ChangeRequest":
                e.status = "Rejected"
            else:
                e.status = "Failed"
                e.failure_message = f"Step fails when it is Rejected by the approver. Approval Step: {step['StepName']}"
        else:
            approvals = sum(1 for d in e.decisions if d["Decision"] == "Approve")
            if approvals < e.min_approvals:
                step["Outputs"]["ApprovalStatus"] = ["Waiting"]
            else:
                step["StepStatus"] = "Success"
                step["ExecutionEndTime"] = now
                step["Outputs"]["ApprovalStatus"] = ["Approved"]
                _approved(e, now)
    return ActionResult({})


def stop_automation_execution(self: SimpleSystemManagerResponse) -> ActionResult:
    p = _params(self)
    b = _backend(self)
    eid = p["AutomationExecutionId"]
    with b.lock:
        e = b.executions.get(eid)
        if e is None:
            raise SSMError("AutomationExecutionNotFoundException", f"Automation Execution with Id {eid} not found.")
        if e.status not in TERMINAL:
            set_terminal(e, "Cancelled")
    return ActionResult({})


def set_terminal(e: Execution, status: str, message: str | None = None) -> None:
    now = state.now()
    for s in e.steps:
        if s.get("StepStatus") in ("Waiting", "InProgress"):
            s["StepStatus"] = status if status != "Rejected" else "Failed"
            s["ExecutionEndTime"] = now
            if status == "TimedOut" and s.get("Action") == "aws:approve":
                s["FailureMessage"] = "Step timed out while step is verifying the approval."
        elif s.get("StepStatus") == "Pending":
            s["StepStatus"] = "Cancelled" if status == "Cancelled" else "Pending"
    e.status = status
    e.end = now
    if message:
        e.failure_message = message
    elif status == "TimedOut":
        e.failure_message = "Step timed out while step is verifying the approval."


def get_automation_execution(self: SimpleSystemManagerResponse) -> ActionResult:
    p = _params(self)
    b = _backend(self)
    eid = p["AutomationExecutionId"]
    with b.lock:
        e = b.executions.get(eid)
        if e is None:
            raise SSMError("AutomationExecutionNotFoundException", f"Automation Execution with Id {eid} not found.")
        _advance_time(e)
        return ActionResult({"AutomationExecution": e.to_full()})


def describe_automation_executions(self: SimpleSystemManagerResponse) -> ActionResult:
    p = _params(self)
    b = _backend(self)
    filters = p.get("Filters") or []
    max_results = int(p.get("MaxResults") or 50)
    start = int(p.get("NextToken") or 0)
    with b.lock:
        items = list(b.executions.values())
        for e in items:
            _advance_time(e)
        for f in filters:
            key, values = f["Key"], f["Values"]
            if key == "ExecutionId":
                items = [e for e in items if e.id in values]
            elif key == "DocumentNamePrefix":
                items = [e for e in items if any(e.document_name.startswith(v) for v in values)]
            elif key == "ExecutionStatus":
                items = [e for e in items if e.status in values]
            elif key == "AutomationSubtype":
                items = [e for e in items if (e.subtype or "") in values]
            elif key == "StartTimeBefore":
                t = _parse_time(values[0])
                items = [e for e in items if t and e.start <= t]
            elif key == "StartTimeAfter":
                t = _parse_time(values[0])
                items = [e for e in items if t and e.start >= t]
            elif key == "TagKey":
                items = [e for e in items if any(t.get("Key") in values for t in e.tags)]
            elif key == "AutomationType":
                items = [e for e in items if "Local" in values]
            elif key == "CurrentAction":
                items = [e for e in items if (e.current_step() or {}).get("Action") in values]
            elif key == "ParentExecutionId":
                items = []
            else:
                raise SSMError("InvalidFilterKey", f"The specified key {key} is not valid.")
        items.sort(key=lambda e: e.start, reverse=True)
        page = items[start : start + max_results]
        out: dict[str, Any] = {"AutomationExecutionMetadataList": [e.to_metadata() for e in page]}
        if start + max_results < len(items):
            out["NextToken"] = str(start + max_results)
    return ActionResult(out)


# ------------------------------------------------------------------ sessions
def _instance_running(account: str, region: str, target: str) -> bool:
    try:
        from moto.ec2.models import ec2_backends

        for r in ec2_backends[account][region].reservations.values():
            for inst in r.instances:
                if inst.id == target:
                    return inst.state == "running"
    except Exception:
        return False
    return False


def start_session(self: SimpleSystemManagerResponse) -> ActionResult:
    p = _params(self)
    b = _backend(self)
    target = p["Target"]
    doc = p.get("DocumentName") or "SSM-SessionManagerRunShell"
    if not _instance_running(self.current_account, self.region, target):
        raise SSMError("TargetNotConnected", f"{target} is not connected.")
    caller = _caller(self)
    who = caller.rsplit("/", 1)[-1]
    sid = f"{who}-{secrets.token_hex(9)[:17]}"
    s = Session(sid, target, doc, caller, p.get("Reason"), p.get("Parameters") or {})
    with b.lock:
        b.sessions[sid] = s
    return ActionResult({"SessionId": sid, "TokenValue": secrets.token_urlsafe(96), "StreamUrl": _stream_url(self.region, sid)})


def _stream_url(region: str, sid: str) -> str:
    return f"wss://ssmmessages.{region}.amazonaws.com/v1/data-channel/{sid}?role=publish_subscribe&cell-number=AAEAAQ"


def resume_session(self: SimpleSystemManagerResponse) -> ActionResult:
    p = _params(self)
    b = _backend(self)
    sid = p["SessionId"]
    with b.lock:
        s = b.sessions.get(sid)
        if s is None or s.status in ("Terminated", "Terminating"):
            raise SSMError("DoesNotExistException", f"Session {sid} does not exist or is terminated.")
    return ActionResult({"SessionId": sid, "TokenValue": secrets.token_urlsafe(96), "StreamUrl": _stream_url(self.region, sid)})


def terminate_session(self: SimpleSystemManagerResponse) -> ActionResult:
    p = _params(self)
    b = _backend(self)
    sid = p["SessionId"]
    with b.lock:
        s = b.sessions.get(sid)
        if s is not None and s.status not in ("Terminated", "Terminating"):
            s.status = "Terminated"
            s.end = state.now()
    return ActionResult({"SessionId": sid})


def describe_sessions(self: SimpleSystemManagerResponse) -> ActionResult:
    p = _params(self)
    b = _backend(self)
    want = p.get("State")
    if want not in ("Active", "History"):
        raise SSMError("ValidationException", "1 validation error detected: Value at 'state' failed to satisfy constraint: Member must satisfy enum value set: [Active, History]")
    max_results = int(p.get("MaxResults") or 20)
    start = int(p.get("NextToken") or 0)
    with b.lock:
        items = [s for s in b.sessions.values() if (s.status in ("Connected", "Connecting")) == (want == "Active")]
        for f in p.get("Filters") or []:
            k, v = f["key"], f["value"]
            if k == "Target":
                items = [s for s in items if s.target == v]
            elif k == "Owner":
                items = [s for s in items if s.owner == v]
            elif k == "Status":
                items = [s for s in items if s.status == v]
            elif k == "SessionId":
                items = [s for s in items if s.id == v]
            elif k == "InvokedAfter":
                t = _parse_time(v)
                items = [s for s in items if t and s.start >= t]
            elif k == "InvokedBefore":
                t = _parse_time(v)
                items = [s for s in items if t and s.start <= t]
            elif k == "AccessType":
                items = [s for s in items if v == "Standard"]
        items.sort(key=lambda s: s.start, reverse=True)
        page = items[start : start + max_results]
        out: dict[str, Any] = {"Sessions": [s.to_dict() for s in page]}
        if start + max_results < len(items):
            out["NextToken"] = str(start + max_results)
    return ActionResult(out)


METHODS = {
    "start_automation_execution": start_automation_execution,
    "start_change_request_execution": start_change_request_execution,
    "send_automation_signal": send_automation_signal,
    "stop_automation_execution": stop_automation_execution,
    "get_automation_execution": get_automation_execution,
    "describe_automation_executions": describe_automation_executions,
    "start_session": start_session,
    "resume_session": resume_session,
    "terminate_session": terminate_session,
    "describe_sessions": describe_sessions,
}


_EXTRA_DOC_TYPES = {"Automation.ChangeTemplate", "ProblemAnalysis", "ProblemAnalysisTemplate", "CloudFormation", "ConformancePackTemplate", "QuickSetup", "ManualApprovalPolicy", "AutoApprovalPolicy"}


def _wrap_validate(orig: Any) -> Any:
    def validate(content: str, name: str, document_type: str | None, document_format: str, strict: bool = True) -> None:
        if document_type in _EXTRA_DOC_TYPES:
            document_type = "Automation"
        return orig(content, name, document_type, document_format, strict)

    return validate


def apply() -> None:
    import moto.ssm.models as ssm_models

    ssm_models._validate_document_info = _wrap_validate(ssm_models._validate_document_info)
    for name, fn in METHODS.items():
        setattr(SimpleSystemManagerResponse, name, fn)
