"""Apply every prodemu extension to moto (idempotent)."""

from __future__ import annotations

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from . import (
        control,
        core_patch,
        ec2_ext,
        elbv2_ext,
        enforcement,
        idempotency,
        route53_ext,
        ssm_ext,
        sts_patch,
    )

    core_patch.apply()
    enforcement.apply()
    sts_patch.apply()
    ssm_ext.apply()
    ec2_ext.apply()
    elbv2_ext.apply()
    route53_ext.apply()
    idempotency.apply()
    control.apply()
    _applied = True
