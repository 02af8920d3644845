"""EC2 endpoint connections and ELBv2 fidelity."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError


def _vpc(acct):
    ec2 = acct.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    return vpc, sub


def _nlb(acct, sub, name="prod-nlb"):
    return acct.client("elbv2").create_load_balancer(Name=name, Subnets=[sub], Type="network", Scheme="internal")["LoadBalancers"][0]


def test_nlb_arn_uses_net(acct):
    _, sub = _vpc(acct)
    lb = _nlb(acct, sub)
    assert ":loadbalancer/net/prod-nlb/" in lb["LoadBalancerArn"]
    elbv2 = acct.client("elbv2")
    vpc = acct.client("ec2").describe_subnets(SubnetIds=[sub])["Subnets"][0]["VpcId"]
    tg = elbv2.create_target_group(Name="tg", Protocol="TCP", Port=443, VpcId=vpc, TargetType="alb")["TargetGroups"][0]
    lst = elbv2.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="TCP", Port=443, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])["Listeners"][0]
    assert ":listener/net/prod-nlb/" in lst["ListenerArn"]
    assert elbv2.describe_load_balancers(LoadBalancerArns=[lb["LoadBalancerArn"]])["LoadBalancers"][0]["Type"] == "network"
    alb = acct.client("elbv2").create_load_balancer(Name="alb", Subnets=[sub], Scheme="internal")["LoadBalancers"][0]
    assert ":loadbalancer/app/alb/" in alb["LoadBalancerArn"]


def test_duplicate_load_balancer_name_rejected_but_identical_is_idempotent(acct):
    _, sub = _vpc(acct)
    a = _nlb(acct, sub)
    b = _nlb(acct, sub)
    assert a["LoadBalancerArn"] == b["LoadBalancerArn"]
    with pytest.raises(ClientError) as e:
        acct.client("elbv2").create_load_balancer(Name="prod-nlb", Subnets=[sub], Type="network", Scheme="internet-facing")
    assert e.value.response["Error"]["Code"] == "DuplicateLoadBalancerName"


def test_duplicate_listener_rejected(acct):
    vpc, sub = _vpc(acct)
    elbv2 = acct.client("elbv2")
    lb = _nlb(acct, sub)
    tg1 = elbv2.create_target_group(Name="tg1", Protocol="TCP", Port=443, VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"]
    tg2 = elbv2.create_target_group(Name="tg2", Protocol="TCP", Port=443, VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"]
    kw = dict(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="TCP", Port=443)
    first = elbv2.create_listener(**kw, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg1}])["Listeners"][0]
    again = elbv2.create_listener(**kw, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg1}])["Listeners"][0]
    assert first["ListenerArn"] == again["ListenerArn"]
    with pytest.raises(ClientError) as e:
        elbv2.create_listener(**kw, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg2}])
    assert e.value.response["Error"]["Code"] == "DuplicateListener"
    assert len(elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]) == 1


def _service(acct, acceptance_required=True, principal=None):
    _, sub = _vpc(acct)
    lb = _nlb(acct, sub)
    ec2 = acct.client("ec2")
    svc = ec2.create_vpc_endpoint_service_configuration(NetworkLoadBalancerArns=[lb["LoadBalancerArn"]], AcceptanceRequired=acceptance_required)["ServiceConfiguration"]
    if principal:
        ec2.modify_vpc_endpoint_service_permissions(ServiceId=svc["ServiceId"], AddAllowedPrincipals=[principal])
    return svc


def test_endpoint_pending_acceptance_until_accepted(acct, other_acct):
    svc = _service(acct, principal=f"arn:aws:iam::{other_acct.id}:root")
    vpc, sub = _vpc(other_acct)
    cec2 = other_acct.client("ec2")
    ep = cec2.create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc, SubnetIds=[sub], ServiceName=svc["ServiceName"])["VpcEndpoint"]
    assert ep["State"] == "pendingAcceptance"
    pec2 = acct.client("ec2")
    conns = pec2.describe_vpc_endpoint_connections(Filters=[{"Name": "service-id", "Values": [svc["ServiceId"]]}])["VpcEndpointConnections"]
    assert [(c["VpcEndpointId"], c["VpcEndpointState"], c["VpcEndpointOwner"]) for c in conns] == [(ep["VpcEndpointId"], "pendingAcceptance", other_acct.id)]
    pending = pec2.describe_vpc_endpoint_connections(Filters=[{"Name": "vpc-endpoint-state", "Values": ["pendingAcceptance"]}])["VpcEndpointConnections"]
    assert len(pending) == 1
    out = pec2.accept_vpc_endpoint_connections(ServiceId=svc["ServiceId"], VpcEndpointIds=[ep["VpcEndpointId"]])
    assert out["Unsuccessful"] == []
    assert cec2.describe_vpc_endpoints(VpcEndpointIds=[ep["VpcEndpointId"]])["VpcEndpoints"][0]["State"] == "available"
    conns = pec2.describe_vpc_endpoint_connections(Filters=[{"Name": "vpc-endpoint-id", "Values": [ep["VpcEndpointId"]]}])["VpcEndpointConnections"]
    assert conns[0]["VpcEndpointState"] == "available"


def test_endpoint_rejected_after_reject(acct):
    svc = _service(acct)
    vpc, sub = _vpc(acct)
    ec2 = acct.client("ec2")
    ep = ec2.create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc, SubnetIds=[sub], ServiceName=svc["ServiceName"])["VpcEndpoint"]
    out = ec2.reject_vpc_endpoint_connections(ServiceId=svc["ServiceId"], VpcEndpointIds=[ep["VpcEndpointId"], "vpce-0000000000000000"])
    assert [u["ResourceId"] for u in out["Unsuccessful"]] == ["vpce-0000000000000000"]
    assert ec2.describe_vpc_endpoints(VpcEndpointIds=[ep["VpcEndpointId"]])["VpcEndpoints"][0]["State"] == "rejected"


def test_endpoint_without_acceptance_is_available(acct):
    svc = _service(acct, acceptance_required=False)
    vpc, sub = _vpc(acct)
    ep = acct.client("ec2").create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc, SubnetIds=[sub], ServiceName=svc["ServiceName"])["VpcEndpoint"]
    assert ep["State"] == "available"


def test_cross_account_endpoint_needs_allowed_principal(acct, other_acct):
    svc = _service(acct)
    vpc, sub = _vpc(other_acct)
    with pytest.raises(ClientError) as e:
        other_acct.client("ec2").create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc, SubnetIds=[sub], ServiceName=svc["ServiceName"])
    assert e.value.response["Error"]["Code"] == "InvalidServiceName"


def test_nlb_lifecycle_with_net_arn(acct):
    vpc, sub = _vpc(acct)
    elbv2 = acct.client("elbv2")
    lb = _nlb(acct, sub, name="life-nlb")
    arn = lb["LoadBalancerArn"]
    tg = elbv2.create_target_group(Name="tg-alb", Protocol="TCP", Port=443, VpcId=vpc, TargetType="alb")["TargetGroups"][0]["TargetGroupArn"]
    alb = elbv2.create_load_balancer(Name="inner-alb", Subnets=[sub], Scheme="internal")["LoadBalancers"][0]["LoadBalancerArn"]
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": alb, "Port": 443}])
    elbv2.create_listener(LoadBalancerArn=arn, Protocol="TCP", Port=443, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    elbv2.add_tags(ResourceArns=[arn], Tags=[{"Key": "owner", "Value": "prodaccess"}])
    assert elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"] == [{"Key": "owner", "Value": "prodaccess"}]
    assert elbv2.describe_load_balancers(Names=["life-nlb"])["LoadBalancers"][0]["LoadBalancerArn"] == arn
    assert elbv2.describe_target_groups(TargetGroupArns=[tg])["TargetGroups"][0]["LoadBalancerArns"] == [arn]
    for l in elbv2.describe_listeners(LoadBalancerArn=arn)["Listeners"]:
        elbv2.delete_listener(ListenerArn=l["ListenerArn"])
    elbv2.delete_load_balancer(LoadBalancerArn=arn)
    assert [x["LoadBalancerName"] for x in elbv2.describe_load_balancers()["LoadBalancers"]] == ["inner-alb"]


def test_endpoint_and_service_client_tokens_are_idempotent(acct, other_acct):
    _, sub = _vpc(acct)
    lb = _nlb(acct, sub, name="token-nlb")
    ec2 = acct.client("ec2")
    kw = dict(NetworkLoadBalancerArns=[lb["LoadBalancerArn"]], AcceptanceRequired=False, ClientToken="route-uid-svc")
    first = ec2.create_vpc_endpoint_service_configuration(**kw)["ServiceConfiguration"]
    again = ec2.create_vpc_endpoint_service_configuration(**kw)["ServiceConfiguration"]
    assert first["ServiceId"] == again["ServiceId"]
    assert len(ec2.describe_vpc_endpoint_service_configurations()["ServiceConfigurations"]) == 1
    ec2.modify_vpc_endpoint_service_permissions(
        ServiceId=first["ServiceId"], AddAllowedPrincipals=[f"arn:aws:iam::{other_acct.id}:root"]
    )
    vpc, csub = _vpc(other_acct)
    cec2 = other_acct.client("ec2")
    ep = dict(
        VpcEndpointType="Interface", VpcId=vpc, SubnetIds=[csub], ServiceName=first["ServiceName"]
    )
    a = cec2.create_vpc_endpoint(**ep, ClientToken="route-uid-ep")["VpcEndpoint"]
    b = cec2.create_vpc_endpoint(**ep, ClientToken="route-uid-ep")["VpcEndpoint"]
    assert a["VpcEndpointId"] == b["VpcEndpointId"]
    assert len(cec2.describe_vpc_endpoints()["VpcEndpoints"]) == 1
    other_vpc = cec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    with pytest.raises(ClientError) as e:
        moved = {**ep, "VpcId": other_vpc, "SubnetIds": []}
        cec2.create_vpc_endpoint(**moved, ClientToken="route-uid-ep")
    assert e.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
    cec2.delete_vpc_endpoints(VpcEndpointIds=[a["VpcEndpointId"]])
    c = cec2.create_vpc_endpoint(**ep, ClientToken="route-uid-ep")["VpcEndpoint"]
    assert c["VpcEndpointId"] != a["VpcEndpointId"]
    untokened = [cec2.create_vpc_endpoint(**ep)["VpcEndpoint"]["VpcEndpointId"] for _ in range(2)]
    assert untokened[0] != untokened[1]


def test_hosted_zone_caller_reference_is_used_once(acct):
    vpc, _ = _vpc(acct)
    r53 = acct.client("route53")
    kw = dict(
        Name="r1.example.com", CallerReference="route-uid-zone",
        HostedZoneConfig={"PrivateZone": True}, VPC={"VPCRegion": "us-east-1", "VPCId": vpc},
    )
    r53.create_hosted_zone(**kw)
    with pytest.raises(ClientError) as e:
        r53.create_hosted_zone(**kw)
    assert e.value.response["Error"]["Code"] == "HostedZoneAlreadyExists"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert len(r53.list_hosted_zones()["HostedZones"]) == 1
