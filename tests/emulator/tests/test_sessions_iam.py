"""SSM sessions + IAM enforcement: the seed scenario and policy features."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from helpers import create_user, run_instance, seed_production_access, start_port_forward


def test_start_session_denied_without_group_membership(acct, enforcement):
    s = seed_production_access(acct)
    ssm = acct.client("ssm", **s["creds"])
    with pytest.raises(ClientError) as e:
        start_port_forward(ssm, s["instance_id"])
    err = e.value.response
    assert err["Error"]["Code"] == "AccessDeniedException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    msg = err["Error"]["Message"]
    assert f"User: arn:aws:iam::{acct.id}:user/alice is not authorized to perform: ssm:StartSession" in msg
    assert f"on resource: arn:aws:ec2:us-east-1:{acct.id}:instance/{s['instance_id']}" in msg
    assert "because no identity-based policy allows the ssm:StartSession action" in msg


def test_group_membership_allows_port_forwarding_session(acct, enforcement):
    s = seed_production_access(acct)
    ssm = acct.client("ssm", **s["creds"])
    with pytest.raises(ClientError):
        start_port_forward(ssm, s["instance_id"])
    acct.client("iam").add_user_to_group(GroupName="ProductionAccess", UserName="alice")
    out = start_port_forward(ssm, s["instance_id"])
    assert out["SessionId"].startswith("alice-")
    assert out["StreamUrl"].startswith("wss://ssmmessages.us-east-1.amazonaws.com/")
    assert out["TokenValue"]
    # removing membership revokes again
    acct.client("iam").remove_user_from_group(GroupName="ProductionAccess", UserName="alice")
    with pytest.raises(ClientError) as e:
        start_port_forward(ssm, s["instance_id"])
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"


def test_bootstrap_and_assumed_role_credentials_not_enforced(acct, enforcement):
    s = seed_production_access(acct)
    # acct.client uses assumed-role creds: fully allowed.
    out = start_port_forward(acct.client("ssm"), s["instance_id"])
    assert out["SessionId"]


def test_describe_and_terminate_sessions_owner_and_states(acct, enforcement):
    s = seed_production_access(acct, with_membership=True)
    ssm = acct.client("ssm", **s["creds"])
    sid = start_port_forward(ssm, s["instance_id"])["SessionId"]
    owner = f"arn:aws:iam::{acct.id}:user/alice"
    active = ssm.describe_sessions(State="Active", Filters=[{"key": "Owner", "value": owner}])["Sessions"]
    assert [x["SessionId"] for x in active] == [sid]
    assert active[0]["Status"] == "Connected"
    assert active[0]["Target"] == s["instance_id"]
    assert active[0]["DocumentName"] == "AWS-StartPortForwardingSession"
    assert ssm.resume_session(SessionId=sid)["SessionId"] == sid
    assert ssm.terminate_session(SessionId=sid)["SessionId"] == sid
    assert ssm.describe_sessions(State="Active")["Sessions"] == []
    hist = ssm.describe_sessions(State="History", Filters=[{"key": "SessionId", "value": sid}])["Sessions"]
    assert hist[0]["Status"] == "Terminated" and "EndDate" in hist[0]
    with pytest.raises(ClientError) as e:
        ssm.resume_session(SessionId=sid)
    assert e.value.response["Error"]["Code"] == "DoesNotExistException"


def test_start_session_target_not_connected_for_unknown_instance(acct):
    with pytest.raises(ClientError) as e:
        acct.client("ssm").start_session(Target="i-0123456789abcdef0")
    assert e.value.response["Error"]["Code"] == "TargetNotConnected"


def test_resource_scoped_allow_checks_instance_and_document(acct, enforcement):
    iam = acct.client("iam")
    creds = create_user(acct, "bob")
    iid = run_instance(acct)
    other = run_instance(acct)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": [
                    f"arn:aws:ec2:us-east-1:{acct.id}:instance/{iid}",
                    "arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession",
                ],
            }
        ],
    }
    iam.put_user_policy(UserName="bob", PolicyName="p", PolicyDocument=json.dumps(policy))
    ssm = acct.client("ssm", **creds)
    assert start_port_forward(ssm, iid)["SessionId"].startswith("bob-")
    with pytest.raises(ClientError) as e:
        start_port_forward(ssm, other)
    assert f"instance/{other}" in e.value.response["Error"]["Message"]
    # Default shell document is not allowed: the document ARN is checked too.
    with pytest.raises(ClientError) as e:
        ssm.start_session(Target=iid)
    assert f"arn:aws:ssm:us-east-1:{acct.id}:document/SSM-SessionManagerRunShell" in e.value.response["Error"]["Message"]


def test_current_time_deny_after_expiry(acct, enforcement, control):
    s = seed_production_access(acct, with_membership=True)
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Action": "ssm:StartSession", "Resource": "*", "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}}
        ],
    }
    acct.client("iam").put_user_policy(UserName="alice", PolicyName="expiry", PolicyDocument=json.dumps(deny))
    ssm = acct.client("ssm", **s["creds"])
    assert start_port_forward(ssm, s["instance_id"])["SessionId"]
    import datetime

    offset = (datetime.datetime(2030, 1, 2, tzinfo=datetime.timezone.utc) - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    control.call("POST", "clock", {"offset_seconds": offset})
    try:
        with pytest.raises(ClientError) as e:
            start_port_forward(ssm, s["instance_id"])
        assert "with an explicit deny in an identity-based policy" in e.value.response["Error"]["Message"]
    finally:
        control.call("POST", "clock", {"offset_seconds": 0})


def test_current_time_allow_window(acct, enforcement):
    creds = create_user(acct, "carol")
    iid = run_instance(acct)
    allow = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*",
             "Condition": {"DateLessThan": {"aws:CurrentTime": "2001-01-01T00:00:00Z"}}}
        ],
    }
    acct.client("iam").put_user_policy(UserName="carol", PolicyName="window", PolicyDocument=json.dumps(allow))
    with pytest.raises(ClientError) as e:
        start_port_forward(acct.client("ssm", **creds), iid)
    assert "because no identity-based policy allows" in e.value.response["Error"]["Message"]


def _mfa_user(acct):
    iam = acct.client("iam")
    creds = create_user(acct, "dave")
    dev = iam.create_virtual_mfa_device(VirtualMFADeviceName="dave")["VirtualMFADevice"]
    seed = dev["Base32StringSeed"].decode()
    from prodemu.enforcement import totp
    import time

    iam.enable_mfa_device(UserName="dave", SerialNumber=dev["SerialNumber"], AuthenticationCode1=totp(seed, time.time() - 30), AuthenticationCode2=totp(seed))
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}
        ],
    }
    iam.put_user_policy(UserName="dave", PolicyName="mfa", PolicyDocument=json.dumps(policy))
    return creds, dev["SerialNumber"], seed


def test_mfa_session_token_counts_as_mfa_present(acct, enforcement):
    from prodemu.enforcement import totp

    creds, serial, seed = _mfa_user(acct)
    iid = run_instance(acct)
    # Long-term keys: MultiFactorAuthPresent absent -> Bool condition fails.
    with pytest.raises(ClientError):
        start_port_forward(acct.client("ssm", **creds), iid)
    # Session token without MFA: present but false.
    plain = acct.client("sts", **creds).get_session_token()["Credentials"]
    assert plain["AccessKeyId"].startswith("ASIA")
    plain_creds = {"aws_access_key_id": plain["AccessKeyId"], "aws_secret_access_key": plain["SecretAccessKey"], "aws_session_token": plain["SessionToken"]}
    with pytest.raises(ClientError):
        start_port_forward(acct.client("ssm", **plain_creds), iid)
    # With a valid TOTP code: allowed, and the key resolves back to the user.
    c = acct.client("sts", **creds).get_session_token(SerialNumber=serial, TokenCode=totp(seed))["Credentials"]
    mfa_creds = {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"], "aws_session_token": c["SessionToken"]}
    assert acct.client("sts", **mfa_creds).get_caller_identity()["Arn"] == f"arn:aws:iam::{acct.id}:user/dave"
    out = start_port_forward(acct.client("ssm", **mfa_creds), iid)
    assert out["SessionId"].startswith("dave-")


def test_mfa_wrong_code_rejected(acct, enforcement):
    creds, serial, seed = _mfa_user(acct)
    with pytest.raises(ClientError) as e:
        acct.client("sts", **creds).get_session_token(SerialNumber=serial, TokenCode="000000" if seed else "1")
    assert e.value.response["Error"]["Code"] == "AccessDenied"


def test_principal_tag_and_resource_tag_conditions(acct, enforcement):
    iam = acct.client("iam")
    creds = create_user(acct, "erin")
    iam.tag_user(UserName="erin", Tags=[{"Key": "team", "Value": "db"}])
    db = run_instance(acct, {"team": "db"})
    web = run_instance(acct, {"team": "web"})
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "arn:aws:ssm:*::document/*"},
            {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "arn:aws:ec2:*:*:instance/*",
             "Condition": {"StringEquals": {"ssm:resourceTag/team": "${aws:PrincipalTag/team}"}, "StringLike": {"aws:PrincipalTag/team": "d*"}}},
        ],
    }
    iam.put_user_policy(UserName="erin", PolicyName="tags", PolicyDocument=json.dumps(policy))
    ssm = acct.client("ssm", **creds)
    assert start_port_forward(ssm, db)["SessionId"]
    with pytest.raises(ClientError):
        start_port_forward(ssm, web)


def test_query_and_ec2_denials_render_per_protocol(acct, enforcement):
    creds = create_user(acct, "frank")
    with pytest.raises(ClientError) as e:
        acct.client("iam", **creds).list_users()
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:
        acct.client("ec2", **creds).describe_vpcs()
    assert e.value.response["Error"]["Code"] == "UnauthorizedOperation"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:
        acct.client("elbv2", **creds).describe_load_balancers()
    assert e.value.response["Error"]["Code"] == "AccessDenied"


def test_not_action_deny(acct, enforcement):
    iam = acct.client("iam")
    creds = create_user(acct, "gina")
    iid = run_instance(acct)
    iam.put_user_policy(UserName="gina", PolicyName="all", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "NotAction": ["ssm:Describe*"], "Resource": "*"},
    ]}))
    ssm = acct.client("ssm", **creds)
    assert ssm.describe_sessions(State="Active")["Sessions"] == []
    with pytest.raises(ClientError) as e:
        start_port_forward(ssm, iid)
    assert "explicit deny" in e.value.response["Error"]["Message"]


def test_route53_works_for_operator_credentials_under_enforcement(acct, enforcement):
    r53 = acct.client("route53")
    zid = r53.create_hosted_zone(Name="corp.internal", CallerReference="x", HostedZoneConfig={"PrivateZone": True}, VPC={"VPCRegion": "us-east-1", "VPCId": acct.client("ec2").create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]})["HostedZone"]["Id"]
    assert r53.get_hosted_zone(Id=zid)["HostedZone"]["Name"] == "corp.internal."
    assert r53.list_resource_record_sets(HostedZoneId=zid)["ResourceRecordSets"]


def test_moto_reset_auth_switch_also_enables_enforcement(acct, endpoint, control):
    import urllib.request

    s = seed_production_access(acct)
    before = control.call("GET", "enforcement")["enabled"]
    urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})).read()
    try:
        assert control.call("GET", "enforcement")["enabled"] is True
        with pytest.raises(ClientError) as e:
            start_port_forward(acct.client("ssm", **s["creds"]), s["instance_id"])
        assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    finally:
        control.call("POST", "enforcement", {"enabled": before})
    assert start_port_forward(acct.client("ssm", **s["creds"]), s["instance_id"])["SessionId"]


def test_expired_session_token_rejected(acct, enforcement, control):
    s = seed_production_access(acct, with_membership=True)
    c = acct.client("sts", **s["creds"]).get_session_token(DurationSeconds=900)["Credentials"]
    sess = {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"], "aws_session_token": c["SessionToken"]}
    assert start_port_forward(acct.client("ssm", **sess), s["instance_id"])["SessionId"]
    control.call("POST", "clock", {"offset_seconds": 3600})
    try:
        with pytest.raises(ClientError) as e:
            start_port_forward(acct.client("ssm", **sess), s["instance_id"])
        assert e.value.response["Error"]["Code"] == "ExpiredTokenException"
    finally:
        control.call("POST", "clock", {"offset_seconds": 0})


def test_deleted_or_inactive_user_key_is_rejected_not_treated_as_bootstrap(acct, enforcement):
    s = seed_production_access(acct, with_membership=True)
    iam = acct.client("iam")
    key = s["creds"]["aws_access_key_id"]
    iam.update_access_key(UserName="alice", AccessKeyId=key, Status="Inactive")
    with pytest.raises(ClientError) as e:
        start_port_forward(acct.client("ssm", **s["creds"]), s["instance_id"])
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    iam.delete_access_key(UserName="alice", AccessKeyId=key)
    with pytest.raises(ClientError) as e:
        acct.client("iam", **s["creds"]).list_users()
    assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"
    with pytest.raises(ClientError) as e:
        start_port_forward(acct.client("ssm", **s["creds"]), s["instance_id"])
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
