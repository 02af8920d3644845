"""Shared scenario builders for the tests."""

from __future__ import annotations

import json
from typing import Any

SESSION_ACTIONS_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["ssm:StartSession", "ssm:ResumeSession", "ssm:DescribeSessions", "ssm:TerminateSession"],
            "Resource": "*",
        }
    ],
}

APPROVAL_TEMPLATE = {
    "schemaVersion": "0.3",
    "description": "prodaccess approval",
    "parameters": {"Approver": {"type": "String", "default": ""}},
    "mainSteps": [
        {"name": "approve", "action": "aws:approve", "inputs": {"Approvers": ["{{ Approver }}"], "MinRequiredApprovals": 1, "Message": "grant"}},
        {"name": "done", "action": "aws:sleep", "inputs": {"Duration": "PT1S"}},
    ],
}

CHANGE_TEMPLATE = {
    "schemaVersion": "0.3",
    "emergencyChange": False,
    "autoApprovable": False,
    "executableRunBooks": [{"name": "AWS-HelloWorld", "version": "$DEFAULT"}],
    "templateInformation": "# prodaccess",
    "mainSteps": [
        {"name": "ApproveAction1", "action": "aws:approve", "timeoutSeconds": 3600, "inputs": {"Message": "approve", "MinRequiredApprovals": 1, "Approvers": []}}
    ],
}


def create_user(acct: Any, name: str) -> dict[str, str]:
    iam = acct.client("iam")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def seed_production_access(acct: Any, user: str = "alice", with_membership: bool = False) -> dict[str, Any]:
    iam = acct.client("iam")
    creds = create_user(acct, user)
    iam.create_group(GroupName="ProductionAccess")
    iam.put_group_policy(GroupName="ProductionAccess", PolicyName="sessions", PolicyDocument=json.dumps(SESSION_ACTIONS_POLICY))
    if with_membership:
        iam.add_user_to_group(GroupName="ProductionAccess", UserName=user)
    instance_id = run_instance(acct)
    return {"creds": creds, "instance_id": instance_id}


def run_instance(acct: Any, tags: dict[str, str] | None = None) -> str:
    ec2 = acct.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    kw: dict[str, Any] = {}
    if tags:
        kw["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", **kw)["Instances"][0]["InstanceId"]


def start_port_forward(ssm: Any, instance_id: str) -> dict[str, Any]:
    return ssm.start_session(
        Target=instance_id,
        DocumentName="AWS-StartPortForwardingSession",
        Parameters={"portNumber": ["3389"], "localPortNumber": ["11111"]},
    )


def create_doc(acct: Any, name: str, content: dict[str, Any], doc_type: str = "Automation") -> None:
    acct.client("ssm").create_document(Name=name, Content=json.dumps(content), DocumentType=doc_type, DocumentFormat="JSON")
