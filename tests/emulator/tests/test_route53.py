"""Route 53 hosted-zone IDs shaped like AWS's, and every call that takes them back."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError

# AWS's shape, as prodaccess's PrivateLinkRoute CRD checks it for an existing zone.
AWS_ZONE_ID = re.compile(r"^Z[0-9A-Z]{20}$")


def _private_zone(acct, name):
    ec2 = acct.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    r53 = acct.client("route53")
    out = r53.create_hosted_zone(
        Name=name,
        CallerReference=f"ref-{name}",
        HostedZoneConfig={"PrivateZone": True},
        VPC={"VPCRegion": "us-east-1", "VPCId": vpc},
    )
    return r53, vpc, out


def test_hosted_zone_ids_start_with_z(acct):
    r53, _, out = _private_zone(acct, "prod.example.com")
    full = out["HostedZone"]["Id"]
    assert full.startswith("/hostedzone/")
    assert AWS_ZONE_ID.match(full.removeprefix("/hostedzone/")), full
    assert out["Location"].endswith(full.removeprefix("/hostedzone/"))
    # Enough zones that an unpatched generator (random first character) fails almost surely.
    for i in range(20):
        zid = r53.create_hosted_zone(Name=f"z{i}.example.com", CallerReference=f"r{i}")[
            "HostedZone"
        ]["Id"]
        assert AWS_ZONE_ID.match(zid.removeprefix("/hostedzone/")), zid
    listed = r53.list_hosted_zones()["HostedZones"]
    assert len(listed) == 21
    assert all(AWS_ZONE_ID.match(z["Id"].removeprefix("/hostedzone/")) for z in listed)


def test_zone_id_round_trips_through_every_call(acct):
    r53, vpc, out = _private_zone(acct, "prod.example.com")
    full = out["HostedZone"]["Id"]
    bare = full.removeprefix("/hostedzone/")
    for zid in (bare, full):
        assert r53.get_hosted_zone(Id=zid)["HostedZone"]["Id"] == full
    change = r53.change_resource_record_sets(
        HostedZoneId=bare,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": "admin.prod.example.com",
                        "Type": "CNAME",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "vpce-1.example.com"}],
                    },
                }
            ]
        },
    )["ChangeInfo"]
    assert r53.get_change(Id=change["Id"])["ChangeInfo"]["Status"] == "INSYNC"
    names = [r["Name"] for r in r53.list_resource_record_sets(HostedZoneId=full)["ResourceRecordSets"]]
    assert "admin.prod.example.com." in names
    r53.change_tags_for_resource(ResourceType="hostedzone", ResourceId=bare, AddTags=[{"Key": "k", "Value": "v"}])
    tags = r53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=bare)["ResourceTagSet"]
    assert tags["ResourceId"] == bare and tags["Tags"] == [{"Key": "k", "Value": "v"}]
    by_vpc = r53.list_hosted_zones_by_vpc(VPCId=vpc, VPCRegion="us-east-1")["HostedZoneSummaries"]
    assert [z["HostedZoneId"] for z in by_vpc] == [bare]
    with pytest.raises(ClientError) as e:
        r53.delete_hosted_zone(Id=bare)
    assert e.value.response["Error"]["Code"] == "HostedZoneNotEmpty"
    r53.change_resource_record_sets(
        HostedZoneId=bare,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "DELETE",
                    "ResourceRecordSet": {
                        "Name": "admin.prod.example.com",
                        "Type": "CNAME",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "vpce-1.example.com"}],
                    },
                }
            ]
        },
    )
    r53.delete_hosted_zone(Id=full)
    with pytest.raises(ClientError) as e:
        r53.get_hosted_zone(Id=bare)
    assert e.value.response["Error"]["Code"] == "NoSuchHostedZone"
