"""ELBv2 fidelity: ``loadbalancer/net/`` ARNs for NLBs, CreateLoadBalancer
idempotency / DuplicateLoadBalancerName, CreateListener idempotency /
DuplicateListener.

AWS documents both CreateLoadBalancer and CreateListener as idempotent: a
repeated call with the *same* settings succeeds and returns the existing
resource; a call reusing the name (load balancer) or port (listener) with
*different* settings fails with DuplicateLoadBalancerName / DuplicateListener.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import moto.elbv2.models as elbv2_models
from moto.elbv2.exceptions import DuplicateListenerError, DuplicateLoadBalancerName
from moto.elbv2.models import ELBv2Backend
from moto.utilities.utils import get_partition

_TL = threading.local()
_LOCK = threading.RLock()
_orig_create_load_balancer = ELBv2Backend.create_load_balancer
_orig_create_listener = ELBv2Backend.create_listener

_TYPE_SEGMENT = {"network": "net", "gateway": "gwy", "application": "app"}


def make_arn_for_load_balancer(account_id: str, lb_id: str, name: str, region_name: str) -> str:
    seg = _TYPE_SEGMENT.get(getattr(_TL, "lb_type", None) or "application", "app")
    return f"arn:{get_partition(region_name)}:elasticloadbalancing:{region_name}:{account_id}:loadbalancer/{seg}/{name}/{lb_id}"


def _lb_fingerprint(lb_type: str | None, scheme: str | None, subnets: list[str], sgs: list[str], ip_type: str | None) -> str:
    return json.dumps(
        [lb_type or "application", scheme or "internet-facing", sorted(subnets), sorted(sgs or []), ip_type or "ipv4"]
    )


def create_load_balancer(self: ELBv2Backend, name: str, security_groups: list[str], subnet_ids: list[str], subnet_mappings: list[dict[str, str]] | None = None, scheme: str = "internet-facing", loadbalancer_type: str | None = None, ip_address_type: str = "ipv4", tags: list[dict[str, str]] | None = None) -> Any:
    subnets = list(subnet_ids or []) + [m["SubnetId"] for m in (subnet_mappings or [])]
    fp = _lb_fingerprint(loadbalancer_type, scheme, subnets, security_groups, ip_address_type)
    with _LOCK:
        for lb in list(self.load_balancers.values()):
            if lb.name == name:
                if getattr(lb, "_prodemu_fp", None) == fp:
                    return lb
                raise DuplicateLoadBalancerName()
        _TL.lb_type = loadbalancer_type
        try:
            lb = _orig_create_load_balancer(
                self, name, security_groups, subnet_ids, subnet_mappings, scheme or "internet-facing",
                loadbalancer_type, ip_address_type or "ipv4", tags,
            )
        finally:
            _TL.lb_type = None
        lb._prodemu_fp = fp
        return lb


def _listener_fp(protocol: str, ssl_policy: str | None, certificate: str | None, actions: list[dict[str, Any]], alpn: Any) -> str:
    return json.dumps([(protocol or "").upper(), ssl_policy, certificate, actions, alpn], sort_keys=True, default=str)


def create_listener(self: ELBv2Backend, load_balancer_arn: str, protocol: str, port: str, ssl_policy: str, certificate: str | None, actions: list[dict[str, Any]], alpn_policy: list[str] | None = None, tags: list[dict[str, str]] | None = None) -> Any:
    fp = _listener_fp(protocol, ssl_policy, certificate, actions, alpn_policy)
    with _LOCK:
        balancer = self.load_balancers.get(load_balancer_arn)
        if balancer is not None:
            for listener in list(balancer.listeners.values()):
                if str(listener.port) == str(port):
                    if getattr(listener, "_prodemu_fp", None) == fp:
                        return listener
                    raise DuplicateListenerError()
        listener = _orig_create_listener(self, load_balancer_arn, protocol, port, ssl_policy, certificate, actions, alpn_policy, tags)
        listener._prodemu_fp = fp
        return listener


def apply() -> None:
    elbv2_models.make_arn_for_load_balancer = make_arn_for_load_balancer  # type: ignore[assignment]
    ELBv2Backend.create_load_balancer = create_load_balancer  # type: ignore[method-assign]
    ELBv2Backend.create_listener = create_listener  # type: ignore[method-assign]
