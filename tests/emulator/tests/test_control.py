"""Fault injection, call log, reset."""

from __future__ import annotations

import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from helpers import create_user


@pytest.fixture
def clean_faults(control):
    yield
    control.call("DELETE", "faults")


def test_fault_injection_throttles_by_count(acct, control, clean_faults):
    control.call("POST", "faults", {"service": "iam", "operation": "AddUserToGroup", "kind": "throttle", "count": 2, "account": acct.id})
    iam = acct.client("iam")
    iam.create_user(UserName="u")
    iam.create_group(GroupName="g")
    for _ in range(2):
        with pytest.raises(ClientError) as e:
            iam.add_user_to_group(GroupName="g", UserName="u")
        assert e.value.response["Error"]["Code"] == "Throttling"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    iam.add_user_to_group(GroupName="g", UserName="u")
    rules = control.call("GET", "faults")["rules"]
    assert rules[0]["hits"] == 2 and rules[0]["exhausted"]


@pytest.mark.parametrize(
    "service,call,code,status",
    [
        ("ec2", lambda a: a.client("ec2").describe_vpcs(), "RequestLimitExceeded", 503),
        ("ssm", lambda a: a.client("ssm").describe_sessions(State="Active"), "ThrottlingException", 400),
        ("elasticloadbalancing", lambda a: a.client("elbv2").describe_load_balancers(), "Throttling", 400),
        ("sts", lambda a: a.client("sts").get_caller_identity(), "Throttling", 400),
        ("route53", lambda a: a.client("route53").list_hosted_zones(), "Throttling", 400),
    ],
)
def test_throttle_codes_per_service(acct, control, clean_faults, service, call, code, status):
    control.call("POST", "faults", {"service": service, "operation": "*", "kind": "throttle", "count": 1, "account": acct.id})
    with pytest.raises(ClientError) as e:
        call(acct)
    assert e.value.response["Error"]["Code"] == code
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_sdk_retries_absorb_single_throttle(acct, control, clean_faults):
    control.call("POST", "faults", {"service": "ec2", "operation": "DescribeVpcs", "kind": "throttle", "count": 1, "account": acct.id})
    ec2 = acct.client("ec2", config=Config(retries={"max_attempts": 3, "mode": "standard"}))
    ec2.describe_vpcs()
    assert control.call("GET", "faults")["rules"][0]["hits"] == 1


def test_route53_prior_request_not_complete_and_http_errors(acct, control, clean_faults):
    control.call("POST", "faults", [
        {"service": "route53", "operation": "ListHostedZones", "kind": "prior_request_not_complete", "count": 1, "account": acct.id},
        {"service": "iam", "operation": "ListUsers", "kind": "http500", "count": 1, "account": acct.id},
        {"service": "iam", "operation": "ListGroups", "kind": "http503", "count": 1, "account": acct.id},
    ])
    with pytest.raises(ClientError) as e:
        acct.client("route53").list_hosted_zones()
    assert e.value.response["Error"]["Code"] == "PriorRequestNotComplete"
    with pytest.raises(ClientError) as e:
        acct.client("iam").list_users()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    with pytest.raises(ClientError) as e:
        acct.client("iam").list_groups()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_fault_reset_closes_connection(acct, control, clean_faults):
    control.call("POST", "faults", {"service": "iam", "operation": "ListUsers", "kind": "reset", "count": 1, "account": acct.id})
    with pytest.raises((ConnectionClosedError, EndpointConnectionError, ConnectionError)):
        acct.client("iam").list_users()
    acct.client("iam").list_users()


def test_fault_delay(acct, control, clean_faults):
    import time

    control.call("POST", "faults", {"service": "iam", "operation": "ListUsers", "kind": "delay", "delay_ms": 300, "count": 1, "account": acct.id})
    t = time.time()
    acct.client("iam").list_users()
    assert time.time() - t >= 0.3


def test_call_log_records_operations_with_caller(acct, control):
    creds = create_user(acct, "logme")
    acct.client("iam", **creds).get_user(UserName="logme")
    out = control.call("GET", f"calls?account={acct.id}&operation=GetUser")
    assert out["calls"], out
    c = out["calls"][-1]
    assert c["service"] == "iam" and c["caller"] == f"arn:aws:iam::{acct.id}:user/logme" and c["status"] == 200
    assert out["counts"]["iam:GetUser"] >= 1


def test_moto_reset_clears_prodemu_state(endpoint, control):
    if __import__("os").environ.get("PRODACCESS_AWS_ENDPOINT"):
        pytest.skip("would reset a shared server")
    control.call("POST", "faults", {"service": "nothing", "kind": "throttle", "count": 1})
    urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset", method="POST")).read()
    assert control.call("GET", "faults")["rules"] == []
    assert control.call("GET", "calls")["total"] == 0
