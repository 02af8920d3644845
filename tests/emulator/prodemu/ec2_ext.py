"""EC2: VPC endpoint connections and AcceptanceRequired.

Endpoint ``State`` values are the lower-camel strings AWS really sends
(``pendingAcceptance``, ``available``, ``rejected``), not the capitalised enum
names in the service model.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import InvalidServiceName
from moto.ec2.models import ec2_backends
from moto.ec2.models.vpcs import VPCBackend
from moto.ec2.responses import EC2Response

_LOCK = threading.RLock()
_orig_create_vpc_endpoint = VPCBackend.create_vpc_endpoint


def _all_ec2_backends(region: str) -> list[Any]:
    out = []
    for acct in list(ec2_backends.keys()):
        try:
            out.append(ec2_backends[acct][region])
        except KeyError:
            pass
    return out


def _find_service(region: str, service_name: str) -> tuple[Any, Any] | None:
    for b in _all_ec2_backends(region):
        for cfg in list(getattr(b, "configurations", {}).values()):
            if cfg.service_name == service_name:
                return b, cfg
    return None


def _principal_allowed(cfg: Any, consumer_account: str) -> bool:
    for p in cfg.principals or []:
        if p == "*" or f":{consumer_account}:" in p or p == consumer_account:
            return True
    return False


def create_vpc_endpoint(self: Any, vpc_id: str, service_name: str, endpoint_type: str | None, *args: Any, **kwargs: Any) -> Any:
    found = None
    if endpoint_type and endpoint_type.lower() in ("interface", "gatewayloadbalancer"):
        found = _find_service(self.region_name, service_name)
        if found is not None:
            provider, cfg = found
            if provider.account_id != self.account_id and not _principal_allowed(cfg, self.account_id):
                raise InvalidServiceName(service_name)
    ep = _orig_create_vpc_endpoint(self, vpc_id, service_name, endpoint_type, *args, **kwargs)
    if found is not None:
        provider, cfg = found
        ep._prodemu_service_id = cfg.id
        ep._prodemu_provider = provider.account_id
        if cfg.acceptance_required:
            ep.state = "pendingAcceptance"
    return ep


def _endpoints_for_service(region: str, service_id: str) -> list[tuple[Any, Any]]:
    out = []
    for b in _all_ec2_backends(region):
        for ep in list(b.vpc_end_points.values()):
            if getattr(ep, "_prodemu_service_id", None) == service_id:
                out.append((b, ep))
    return out


def _connection(b: Any, ep: Any, cfg: Any) -> dict[str, Any]:
    return {
        "ServiceId": cfg.id,
        "VpcEndpointId": ep.id,
        "VpcEndpointOwner": b.account_id,
        "VpcEndpointState": ep.state,
        "CreationTimestamp": ep.creation_timestamp,
        "DnsEntries": ep.dns_entries or [],
        "NetworkLoadBalancerArns": list(cfg.network_load_balancer_arns),
        "GatewayLoadBalancerArns": list(cfg.gateway_load_balancer_arns),
        "IpAddressType": "ipv4",
        "VpcEndpointConnectionId": f"vpce-con-{ep.id[5:]}",
        "VpcEndpointRegion": b.region_name,
    }


def describe_vpc_endpoint_connections(self: EC2Response) -> ActionResult:
    filters = self._filters_from_querystring() or {}
    rows = []
    with _LOCK:
        for cfg in list(self.ec2_backend.configurations.values()):
            for b, ep in _endpoints_for_service(self.region, cfg.id):
                rows.append(_connection(b, ep, cfg))
    def keep(row: dict[str, Any]) -> bool:
        for name, values in filters.items():
            field = {
                "service-id": "ServiceId",
                "vpc-endpoint-state": "VpcEndpointState",
                "vpc-endpoint-id": "VpcEndpointId",
                "vpc-endpoint-owner": "VpcEndpointOwner",
                "vpc-endpoint-region": "VpcEndpointRegion",
            }.get(name)
            if field is None:
                continue
            if str(row[field]) not in values:
                return False
        return True
    rows = [r for r in rows if keep(r)]
    return ActionResult({"VpcEndpointConnections": rows})


def _set_state(self: EC2Response, new_state: str) -> ActionResult:
    service_id = self._get_param("ServiceId")
    ids = self._get_param("VpcEndpointIds", []) or []
    cfg = self.ec2_backend.configurations.get(service_id)
    unsuccessful = []
    if cfg is None:
        for i in ids:
            unsuccessful.append({"Error": {"Code": "InvalidVpcEndpointServiceId.NotFound", "Message": f"The Vpc Endpoint Service Id '{service_id}' does not exist"}, "ResourceId": i})
        return ActionResult({"Unsuccessful": unsuccessful})
    with _LOCK:
        eps = {ep.id: ep for _, ep in _endpoints_for_service(self.region, service_id)}
        for i in ids:
            ep = eps.get(i)
            if ep is None:
                unsuccessful.append({"Error": {"Code": "InvalidVpcEndpointId.NotFound", "Message": f"The Vpc Endpoint Id '{i}' does not exist"}, "ResourceId": i})
                continue
            if new_state == "available" and ep.state not in ("pendingAcceptance", "available"):
                unsuccessful.append({"Error": {"Code": "InvalidVpcEndpointState", "Message": f"Endpoint {i} cannot be accepted from state {ep.state}"}, "ResourceId": i})
                continue
            ep.state = new_state
    return ActionResult({"Unsuccessful": unsuccessful})


def accept_vpc_endpoint_connections(self: EC2Response) -> ActionResult:
    return _set_state(self, "available")


def reject_vpc_endpoint_connections(self: EC2Response) -> ActionResult:
    return _set_state(self, "rejected")


def apply() -> None:
    VPCBackend.create_vpc_endpoint = create_vpc_endpoint  # type: ignore[method-assign]
    EC2Response.describe_vpc_endpoint_connections = describe_vpc_endpoint_connections  # type: ignore[attr-defined]
    EC2Response.accept_vpc_endpoint_connections = accept_vpc_endpoint_connections  # type: ignore[attr-defined]
    EC2Response.reject_vpc_endpoint_connections = reject_vpc_endpoint_connections  # type: ignore[attr-defined]
