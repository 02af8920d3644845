"""Idempotency tokens moto ignores: EC2 ``ClientToken`` on CreateVpcEndpoint and
CreateVpcEndpointServiceConfiguration, Route 53 ``CallerReference`` on CreateHostedZone.

AWS documents all three as the way to retry a create without making a second resource: a
repeated EC2 call with the same token and the same parameters returns the resource the first
call made (other parameters: ``IdempotentParameterMismatch``); a second hosted zone with a
caller reference already used fails with ``HostedZoneAlreadyExists``. moto makes a second
resource every time, so an answer that arrives after the client gave up (and retried) would
show duplicates that AWS never makes.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.exceptions import ServiceException
from moto.ec2.models.vpc_service_configuration import VPCServiceConfigurationBackend
from moto.ec2.models.vpcs import VPCBackend
from moto.ec2.responses import EC2Response
from moto.route53.models import Route53Backend

_LOCK = threading.RLock()
_TL = threading.local()


class IdempotentParameterMismatch(ServiceException):
    code = "IdempotentParameterMismatch"


class HostedZoneAlreadyExists(ServiceException):
    code = "HostedZoneAlreadyExists"


def _wrap_create_vpc_endpoint(original: Any) -> Any:
    def create_vpc_endpoint(
        self: Any,
        vpc_id: str,
        service_name: str,
        endpoint_type: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        token = kwargs.get("client_token")
        if not token:
            return original(self, vpc_id, service_name, endpoint_type, *args, **kwargs)
        with _LOCK:
            for ep in list(self.vpc_end_points.values()):
                if getattr(ep, "client_token", None) != token or ep.state == "deleted":
                    continue
                if ep.vpc_id != vpc_id or ep.service_name != service_name:
                    raise IdempotentParameterMismatch(
                        f"The client token {token} was used for a request with other parameters."
                    )
                return ep
            return original(self, vpc_id, service_name, endpoint_type, *args, **kwargs)

    return create_vpc_endpoint


def _wrap_service_response(original: Any) -> Any:
    def create_vpc_endpoint_service_configuration(self: EC2Response) -> Any:
        _TL.token = self._get_param("ClientToken")
        try:
            return original(self)
        finally:
            _TL.token = None

    return create_vpc_endpoint_service_configuration


def _wrap_create_service(original: Any) -> Any:
    def create_vpc_endpoint_service_configuration(
        self: Any, lb_arns: list[Any], *args: Any, **kwargs: Any
    ) -> Any:
        token = getattr(_TL, "token", None)
        if not token:
            return original(self, lb_arns, *args, **kwargs)
        with _LOCK:
            for cfg in list(self.configurations.values()):
                if getattr(cfg, "_prodemu_client_token", None) != token:
                    continue
                theirs = sorted(cfg.network_load_balancer_arns + cfg.gateway_load_balancer_arns)
                if theirs != sorted(lb_arns):
                    raise IdempotentParameterMismatch(
                        f"The client token {token} was used for a request with other parameters."
                    )
                return cfg
            cfg = original(self, lb_arns, *args, **kwargs)
            cfg._prodemu_client_token = token
            return cfg

    return create_vpc_endpoint_service_configuration


def _wrap_create_hosted_zone(original: Any) -> Any:
    def create_hosted_zone(
        self: Any,
        name: str,
        private_zone: bool,
        caller_reference: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        with _LOCK:
            zones = list(self.zones.values())
            if caller_reference and any(z.caller_reference == caller_reference for z in zones):
                raise HostedZoneAlreadyExists(
                    "A hosted zone has already been created with the specified caller reference "
                    f"{caller_reference}."
                )
            return original(self, name, private_zone, caller_reference, *args, **kwargs)

    return create_hosted_zone


def apply() -> None:
    """Call after ec2_ext.apply(): wraps whatever CreateVpcEndpoint it installed."""
    vpcs: Any = VPCBackend
    vpcs.create_vpc_endpoint = _wrap_create_vpc_endpoint(vpcs.create_vpc_endpoint)
    response: Any = EC2Response
    response.create_vpc_endpoint_service_configuration = _wrap_service_response(
        response.create_vpc_endpoint_service_configuration
    )
    services: Any = VPCServiceConfigurationBackend
    services.create_vpc_endpoint_service_configuration = _wrap_create_service(
        services.create_vpc_endpoint_service_configuration
    )
    route53: Any = Route53Backend
    route53.create_hosted_zone = _wrap_create_hosted_zone(route53.create_hosted_zone)
