"""Wraps moto's BaseResponse.call_action: enforcement, fault injection, call log,
per-protocol rendering of denials."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, BaseResponse

from . import enforcement, state

JSON_SERVICES = {"ssm", "acm"}

_SCOPE_RE = re.compile(r"Credential=[^/]+/[^/]+/([^/]+)/([^/]+)/")


def iam_service_prefix(resp: BaseResponse) -> str:
    auth = resp.headers.get("Authorization", "") if resp.headers else ""
    m = _SCOPE_RE.search(auth)
    if m:
        return m.group(2)
    name = resp.service_name or ""
    return {"elbv2": "elasticloadbalancing"}.get(name, name)


def _protocol(service: str) -> str:
    if service in JSON_SERVICES:
        return "json"
    if service == "ec2":
        return "ec2"
    if service == "route53":
        return "rest-xml"
    return "query"


class _Err(ServiceException):
    def __init__(self, code: str, message: str):
        super().__init__(code, message)


def render_error(resp: BaseResponse, code: str, message: str, status: int) -> tuple[int, dict[str, Any], str]:
    try:
        s, headers, body = resp.serialized(ActionResult(_Err(code, message)))
    except Exception:
        headers = {"Content-Type": "text/xml"}
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>0</RequestId></ErrorResponse>"
        )
    headers = dict(headers)
    headers.pop("status", None)
    if _protocol(iam_service_prefix(resp)) == "json":
        headers["x-amzn-ErrorType"] = code
    return status, headers, body


def render_denied(resp: BaseResponse, service: str, denied: enforcement.Denied) -> tuple[int, dict[str, Any], str]:
    proto = _protocol(service)
    if proto == "json":
        return render_error(resp, "AccessDeniedException", denied.message, 400)
    if proto == "ec2":
        return render_error(
            resp,
            "UnauthorizedOperation",
            "You are not authorized to perform this operation. " + denied.message,
            403,
        )
    return render_error(resp, "AccessDenied", denied.message, 403)


class AuthFailure(Exception):
    def __init__(self, code: str, message: str, status: int):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# ------------------------------------------------------------- resources
def _json_body(resp: BaseResponse) -> dict[str, Any]:
    try:
        body = resp.body
        if isinstance(body, bytes):
            body = body.decode()
        return json.loads(body or "{}")
    except Exception:
        return {}


def _q(resp: BaseResponse, name: str) -> str | None:
    v = resp.querystring.get(name) if resp.querystring else None
    if isinstance(v, list):
        return v[0] if v else None
    return v


def ssm_document_arn(region: str, account: str, name: str) -> str:
    if name.startswith("arn:"):
        return name
    if name.startswith("AWS-") or name.startswith("AWSSupport-") or name.startswith("AmazonEKS-"):
        return f"arn:aws:ssm:{region}::document/{name}"
    return f"arn:aws:ssm:{region}:{account}:document/{name}"


def request_resources(resp: BaseResponse, service: str, action: str, account: str) -> list[str]:
    region = resp.region
    try:
        if service == "ssm":
            body = _json_body(resp)
            if action == "StartSession":
                target = body.get("Target", "")
                doc = body.get("DocumentName") or "SSM-SessionManagerRunShell"
                if target.startswith("mi-"):
                    tarn = f"arn:aws:ssm:{region}:{account}:managed-instance/{target}"
                else:
                    tarn = f"arn:aws:ec2:{region}:{account}:instance/{target}"
                return [tarn, ssm_document_arn(region, account, doc)]
            if action in ("TerminateSession", "ResumeSession"):
                return [f"arn:aws:ssm:{region}:{account}:session/{body.get('SessionId', '')}"]
            if action in ("GetAutomationExecution", "SendAutomationSignal", "StopAutomationExecution"):
                return [f"arn:aws:ssm:{region}:{account}:automation-execution/{body.get('AutomationExecutionId', '')}"]
            if action == "StartAutomationExecution":
                return [f"arn:aws:ssm:{region}:{account}:automation-definition/{body.get('DocumentName', '')}:$DEFAULT"]
            if action == "StartChangeRequestExecution":
                return [ssm_document_arn(region, account, body.get("DocumentName", ""))]
            return ["*"]
        if service == "iam":
            group = _q(resp, "GroupName")
            if group:
                return [f"arn:aws:iam::{account}:group/{group}"]
            user = _q(resp, "UserName")
            if user:
                return [f"arn:aws:iam::{account}:user/{user}"]
            role = _q(resp, "RoleName")
            if role:
                return [f"arn:aws:iam::{account}:role/{role}"]
            pol = _q(resp, "PolicyArn")
            if pol:
                return [pol]
        if service == "sts" and action == "AssumeRole":
            return [_q(resp, "RoleArn") or "*"]
    except Exception:
        pass
    return ["*"]


# ------------------------------------------------------------- auth hook
def _authenticate_and_authorize_normal_action(self: BaseResponse, resource: str = "*") -> None:
    if not enforcement.enforcement_active():
        ActionAuthenticatorMixin.request_count += 1
        return
    if "Authorization" not in (self.headers or {}):
        return
    access_key = self.get_access_key()
    try:
        principal = enforcement.resolve_principal(access_key, self.current_account, self.region)
    except enforcement.InvalidKey:
        if iam_service_prefix(self) == "ec2":
            raise AuthFailure("AuthFailure", "AWS was not able to validate the provided access credentials", 401)
        if _protocol(iam_service_prefix(self)) == "json":
            raise AuthFailure("UnrecognizedClientException", "The security token included in the request is invalid.", 400)
        raise AuthFailure("InvalidClientTokenId", "The security token included in the request is invalid.", 403)
    if principal.kind != "user":
        return
    service = iam_service_prefix(self)
    action = self._get_action() or ""
    sk = state.SESSION_KEYS.get(access_key)
    if sk is not None:
        token = self.headers.get("X-Amz-Security-Token")
        if token != sk.session_token:
            raise AuthFailure(
                "InvalidClientTokenId", "The security token included in the request is invalid.", 403
            )
        if state.now() >= sk.expiration:
            raise AuthFailure(
                "ExpiredTokenException" if _protocol(service) == "json" else "ExpiredToken",
                "The security token included in the request is expired",
                400 if _protocol(service) == "json" else 403,
            )
    if service == "sts" and action in ("GetCallerIdentity", "GetSessionToken"):
        return
    resources = request_resources(self, service, action, principal.account_id)
    enforcement.authorize(service, action, principal, resources, self.region)


# ------------------------------------------------------------- faults
def _fault_response(resp: BaseResponse, service: str, rule: state.FaultRule) -> tuple[int, dict[str, Any], str]:
    kind = rule.kind
    if kind == "throttle":
        if service == "ec2":
            return render_error(resp, "RequestLimitExceeded", "Request limit exceeded.", 503)
        if service in JSON_SERVICES:
            return render_error(resp, "ThrottlingException", "Rate exceeded", 400)
        return render_error(resp, "Throttling", "Rate exceeded", 400)
    if kind == "prior_request_not_complete":
        return render_error(
            resp,
            "PriorRequestNotComplete",
            "The request was rejected because Route 53 was still processing a prior request.",
            400,
        )
    if kind == "http500":
        code = {"ssm": "InternalServerError", "ec2": "InternalError"}.get(service, "InternalFailure")
        return render_error(resp, code, "We encountered an internal error. Please try again.", 500)
    if kind == "http503":
        code = "Unavailable" if service == "ec2" else "ServiceUnavailable"
        return render_error(resp, code, "Service is unavailable. Please try again later.", 503)
    raise AssertionError(kind)


_ERR_CODE_RE = re.compile(r'<Code>([^<]+)</Code>|"__type"\s*:\s*"([^"]+)"')


def _error_code(body: Any) -> str | None:
    if isinstance(body, bytes):
        try:
            body = body[:2000].decode("utf-8", "replace")
        except Exception:
            return None
    if not isinstance(body, str):
        return None
    m = _ERR_CODE_RE.search(body[:2000])
    if not m:
        return None
    code = m.group(1) or m.group(2)
    return code.rsplit("#", 1)[-1]


_orig_call_action = BaseResponse.call_action


def call_action(self: BaseResponse) -> Any:
    service = iam_service_prefix(self)
    try:
        operation = self._get_action() or ""
    except Exception:
        operation = ""
    account = self.current_account
    try:
        caller = enforcement.caller_arn_for_key(self.get_access_key(), account, self.region)
    except Exception:
        caller = None
    entry: dict[str, Any] = {
        "time": time.time(),
        "service": service,
        "operation": operation,
        "account": account,
        "region": self.region,
        "caller": caller,
    }
    rule = state.pick_fault(service, operation, account)
    result: Any
    if rule is not None and rule.kind == "delay":
        time.sleep(rule.delay_ms / 1000.0)
        rule = None
    if rule is not None and rule.kind == "reset":
        state.THREAD.reset = True
        entry.update(status=0, fault="reset")
        state.record_call(entry)
        return 500, {}, ""
    if rule is not None:
        result = _fault_response(self, service, rule)
        entry["fault"] = rule.kind
    else:
        try:
            result = _orig_call_action(self)
        except enforcement.Denied as d:
            result = render_denied(self, service, d)
        except AuthFailure as f:
            result = render_error(self, f.code, f.message, f.status)
    status = result[0]
    entry["status"] = status
    if status >= 400:
        entry["error"] = _error_code(result[2])
    state.record_call(entry)
    return result


def apply() -> None:
    BaseResponse.call_action = call_action  # type: ignore[method-assign]
    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = (  # type: ignore[method-assign]
        _authenticate_and_authorize_normal_action
    )
