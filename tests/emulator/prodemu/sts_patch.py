"""sts:GetSessionToken issuing real per-user ASIA keys (MFA-aware), and
GetCallerIdentity that knows them."""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.iam.models import iam_backends
from moto.sts.responses import TokenResponse
from moto.utilities.utils import get_partition

from . import enforcement, state
from .core_patch import AuthFailure

_orig_get_session_token = TokenResponse.get_session_token
_orig_get_caller_identity = TokenResponse.get_caller_identity


def get_session_token(self: TokenResponse) -> Any:
    access_key = self.get_access_key()
    if access_key in state.SESSION_KEYS:
        raise AuthFailure("AccessDenied", "Cannot call GetSessionToken with session credentials", 403)
    backend = iam_backends[self.current_account][get_partition(self.region)]
    user = backend.get_user_from_access_key_id(access_key)
    if user is None:
        # Bootstrap/root-like credentials: keep moto's stock behaviour.
        return _orig_get_session_token(self)
    duration = self._get_int_param("DurationSeconds", 43200)
    serial = self._get_param("SerialNumber")
    code = self._get_param("TokenCode")
    mfa = False
    if serial or code:
        device = backend.virtual_mfa_devices.get(serial or "")
        if device is None or device.user is None or device.user.name != user.name or not code:
            raise AuthFailure(
                "AccessDenied", "MultiFactorAuthentication failed, unable to validate MFA code.", 403
            )
        if not enforcement.verify_totp(device.base32_string_seed, str(code)):
            raise AuthFailure(
                "AccessDenied", "MultiFactorAuthentication failed with invalid MFA one time pass code. ", 403
            )
        mfa = True
    sk = enforcement.issue_session_token(self.current_account, self.region, user, mfa, duration)
    return ActionResult(
        {
            "Credentials": {
                "AccessKeyId": sk.access_key_id,
                "SecretAccessKey": sk.secret_access_key,
                "SessionToken": sk.session_token,
                "Expiration": sk.expiration,
            }
        }
    )


def get_caller_identity(self: TokenResponse) -> Any:
    sk = state.SESSION_KEYS.get(self.get_access_key())
    if sk is not None:
        user = iam_backends[sk.account_id][get_partition(self.region)].users.get(sk.user_name)
        return ActionResult(
            {"UserId": user.id if user else sk.user_name, "Account": sk.account_id, "Arn": sk.user_arn}
        )
    return _orig_get_caller_identity(self)


def apply() -> None:
    TokenResponse.get_session_token = get_session_token  # type: ignore[method-assign]
    TokenResponse.get_caller_identity = get_caller_identity  # type: ignore[method-assign]
