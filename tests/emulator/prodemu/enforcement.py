"""Replacement for moto's IAM enforcement.

Only credentials that belong to IAM users are checked: access keys made by
iam:CreateAccessKey and the session keys we issue from sts:GetSessionToken.
Bootstrap static credentials and assumed-role credentials are always allowed
(the operator runs with those).

Switch: moto's own ``/moto-api/reset-auth`` counter (``settings.INITIAL_NO_AUTH_ACTION_COUNT``)
or our ``POST /_prodemu/enforcement``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import secrets
import string
import struct
import time
from typing import Any

from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition

from . import policy, state


def enforcement_active() -> bool:
    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def set_enforcement(enabled: bool) -> None:
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if enabled else float("inf")
    ActionAuthenticatorMixin.request_count = 0


class Principal:
    def __init__(
        self,
        arn: str,
        account_id: str,
        user_name: str | None = None,
        mfa: bool | None = None,
        mfa_auth_time: datetime.datetime | None = None,
        kind: str = "other",
        user_id: str | None = None,
    ):
        self.arn = arn
        self.account_id = account_id
        self.user_name = user_name
        self.mfa = mfa
        self.mfa_auth_time = mfa_auth_time
        self.kind = kind  # "user" (enforced) or "other"
        self.user_id = user_id


class InvalidKey(Exception):
    """The access key belonged to an IAM user but is deleted or inactive."""


def _record_user_key(orig: Any) -> Any:
    def create_access_key(self: Any, user_name: str, prefix: str = "AKIA", status: str = "Active") -> Any:
        key = orig(self, user_name, prefix, status)
        with state.LOCK:
            state.ISSUED_USER_KEYS[key.access_key_id] = (self.account_id, user_name)
        return key

    return create_access_key


def apply() -> None:
    from moto.iam.models import IAMBackend

    IAMBackend.create_access_key = _record_user_key(IAMBackend.create_access_key)  # type: ignore[method-assign]


class Denied(Exception):
    def __init__(self, service: str, principal_arn: str, action: str, resource: str, explicit: bool, message: str | None = None):
        super().__init__(action)
        self.service = service
        self.principal_arn = principal_arn
        self.action = action
        self.resource = resource
        self.explicit = explicit
        self.custom_message = message

    @property
    def message(self) -> str:
        if self.custom_message:
            return self.custom_message
        why = (
            "with an explicit deny in an identity-based policy"
            if self.explicit
            else f"because no identity-based policy allows the {self.action} action"
        )
        return (
            f"User: {self.principal_arn} is not authorized to perform: {self.action} "
            f"on resource: {self.resource} {why}"
        )


def _iam(account_id: str, region: str) -> Any:
    return iam_backends[account_id][get_partition(region)]


def resolve_principal(access_key: str, account_id: str, region: str) -> Principal:
    sk = state.SESSION_KEYS.get(access_key)
    if sk is not None:
        user = _iam(sk.account_id, region).users.get(sk.user_name)
        if user is None:
            raise InvalidKey()
        return Principal(
            sk.user_arn,
            sk.account_id,
            user_name=sk.user_name,
            mfa=sk.mfa,
            mfa_auth_time=sk.issued if sk.mfa else None,
            kind="user",
            user_id=user.id if user else None,
        )
    try:
        backend = _iam(account_id, region)
        user = backend.get_user_from_access_key_id(access_key)
    except Exception:
        user = None
    if user is not None:
        key = next((k for k in user.access_keys if k.access_key_id == access_key), None)
        if key is not None and key.status != "Active":
            raise InvalidKey()
        return Principal(user.arn, account_id, user_name=user.name, kind="user", user_id=user.id)
    if access_key in state.ISSUED_USER_KEYS:
        # A user key that was deleted (or whose user was deleted).
        raise InvalidKey()
    return Principal(caller_arn_for_key(access_key, account_id, region), account_id)


def caller_arn_for_key(access_key: str, account_id: str, region: str) -> str:
    sk = state.SESSION_KEYS.get(access_key)
    if sk is not None:
        return sk.user_arn
    try:
        return sts_backends[account_id][get_partition(region)].get_caller_identity(access_key, region)[1]
    except Exception:
        return f"arn:aws:iam::{account_id}:root"


def collect_policy_documents(account_id: str, region: str, user_name: str) -> list[Any]:
    backend = _iam(account_id, region)
    docs: list[Any] = []

    def managed_doc(p: Any) -> Any:
        for v in p.versions:
            if v.is_default:
                return v.document
        return None

    user = backend.users.get(user_name)
    if user is None:
        return docs
    for name in backend.list_user_policies(user_name):
        docs.append(backend.get_user_policy(user_name, name)["policy_document"])
    attached, _ = backend.list_attached_user_policies(user_name)
    docs += [managed_doc(p) for p in attached]
    for group in backend.get_groups_for_user(user_name):
        for name in backend.list_group_policies(group.name):
            docs.append(backend.get_group_policy(group.name, name)["policy_document"])
        attached, _ = backend.list_attached_group_policies(group.name)
        docs += [managed_doc(p) for p in attached]
    return [d for d in docs if d]


def principal_context(principal: Principal, region: str) -> dict[str, Any]:
    now = state.now()
    ctx: dict[str, Any] = {
        "aws:CurrentTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aws:EpochTime": str(int(now.timestamp())),
        "aws:PrincipalArn": principal.arn,
        "aws:PrincipalAccount": principal.account_id,
        "aws:PrincipalType": "User",
        "aws:RequestedRegion": region,
        "aws:SecureTransport": "false",
        "aws:SourceIp": "127.0.0.1",
        "aws:ViaAWSService": "false",
    }
    if principal.user_name:
        ctx["aws:username"] = principal.user_name
    if principal.user_id:
        ctx["aws:userid"] = principal.user_id
    # aws:MultiFactorAuthPresent is absent for long-term access keys (AWS documents
    # this); present (true/false) for temporary credentials.
    if principal.mfa is not None:
        ctx["aws:MultiFactorAuthPresent"] = "true" if principal.mfa else "false"
        if principal.mfa and principal.mfa_auth_time:
            ctx["aws:MultiFactorAuthAge"] = str(int((now - principal.mfa_auth_time).total_seconds()))
            ctx["aws:TokenIssueTime"] = principal.mfa_auth_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        backend = _iam(principal.account_id, region)
        user = backend.users.get(principal.user_name)
        if user is not None:
            for t in backend.tagger.list_tags_for_resource(user.arn)["Tags"]:
                ctx[f"aws:PrincipalTag/{t['Key']}"] = t["Value"]
    except Exception:
        pass
    return ctx


def resource_tags(resource_arn: str, account_id: str, region: str) -> dict[str, str]:
    """Tags for resources whose tags our policies condition on."""
    try:
        if ":ec2:" in resource_arn and ":instance/" in resource_arn:
            from moto.ec2.models import ec2_backends

            iid = resource_arn.rsplit("/", 1)[1]
            b = ec2_backends[account_id][region]
            return {t["key"]: t["value"] for t in b.describe_tags(filters={"resource-id": [iid]})}
    except Exception:
        pass
    return {}


def authorize(
    service: str,
    operation: str,
    principal: Principal,
    resources: list[str],
    region: str,
    extra_context: dict[str, Any] | None = None,
) -> None:
    action = f"{service}:{operation}"
    docs = collect_policy_documents(principal.account_id, region, principal.user_name or "")
    base = principal_context(principal, region)
    if extra_context:
        base.update(extra_context)
    for resource in resources or ["*"]:
        ctx = dict(base)
        for k, v in resource_tags(resource, principal.account_id, region).items():
            ctx[f"aws:ResourceTag/{k}"] = v
            if service == "ssm":
                ctx[f"ssm:resourceTag/{k}"] = v
            if service == "ec2":
                ctx[f"ec2:ResourceTag/{k}"] = v
        result = policy.evaluate(docs, action, resource, ctx)
        if result != policy.ALLOW:
            raise Denied(service, principal.arn, action, resource, result == policy.EXPLICIT_DENY)


# ---------------------------------------------------------------- TOTP / MFA
def totp(seed_base32: str, at: float | None = None, step: int = 30, digits: int = 6) -> str:
    """RFC 6238 TOTP (HMAC-SHA1) for a base32 seed."""
    key = base64.b32decode(seed_base32 + "=" * (-len(seed_base32) % 8), casefold=True)
    counter = int((time.time() if at is None else at) // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % (10**digits)
    return str(code).zfill(digits)


def verify_totp(seed_base32: str, code: str) -> bool:
    now = time.time()
    return any(hmac.compare_digest(totp(seed_base32, now + d * 30), str(code)) for d in (-1, 0, 1))


def issue_session_token(
    account_id: str, region: str, user: Any, mfa: bool, duration: int
) -> state.SessionKey:
    backend = _iam(account_id, region)
    key = backend.create_temp_access_key()  # ASIA..., registered so moto maps it to the account
    token = "FwoGZXIvYXdzE" + base64.b64encode(secrets.token_bytes(96)).decode()
    issued = state.now()
    sk = state.SessionKey(
        access_key_id=key.access_key_id,
        secret="".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40)),
        token=token,
        account_id=account_id,
        user_name=user.name,
        user_arn=user.arn,
        mfa=mfa,
        issued=issued,
        expiration=issued + datetime.timedelta(seconds=duration),
    )
    key.secret_access_key = sk.secret_access_key
    with state.LOCK:
        state.SESSION_KEYS[sk.access_key_id] = sk
    return sk


__all__ = ["Denied", "authorize", "resolve_principal", "totp", "verify_totp", "json"]
