"""SSM Automation approvals and Change Manager change requests."""

from __future__ import annotations

import datetime
import json

import pytest
from botocore.exceptions import ClientError

from helpers import APPROVAL_TEMPLATE, CHANGE_TEMPLATE, create_doc, create_user


def _approval_step(execution):
    return next(s for s in execution["StepExecutions"] if s["Action"] == "aws:approve")


def test_automation_waits_for_approval_then_succeeds(acct):
    create_doc(acct, "ProdAccess-Approval", APPROVAL_TEMPLATE)
    ssm = acct.client("ssm")
    eid = ssm.start_automation_execution(DocumentName="ProdAccess-Approval")["AutomationExecutionId"]
    assert len(eid) == 36
    ex = ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]
    assert ex["AutomationExecutionStatus"] == "Waiting"
    assert ex["CurrentStepName"] == "approve" and ex["CurrentAction"] == "aws:approve"
    assert _approval_step(ex)["StepStatus"] == "Waiting"
    ssm.send_automation_signal(AutomationExecutionId=eid, SignalType="Approve", Payload={"Comment": ["ok"]})
    ex = ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]
    assert ex["AutomationExecutionStatus"] == "Success"
    assert all(s["StepStatus"] == "Success" for s in ex["StepExecutions"])


def test_automation_rejected_approval_fails_execution(acct):
    create_doc(acct, "ProdAccess-Approval", APPROVAL_TEMPLATE)
    ssm = acct.client("ssm")
    eid = ssm.start_automation_execution(DocumentName="ProdAccess-Approval")["AutomationExecutionId"]
    ssm.send_automation_signal(AutomationExecutionId=eid, SignalType="Reject", Payload={"Comment": ["no"]})
    ex = ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]
    assert ex["AutomationExecutionStatus"] == "Failed"
    step = _approval_step(ex)
    assert step["StepStatus"] == "Failed"
    assert step["Outputs"]["ApprovalStatus"] == ["Rejected"]
    assert json.loads(step["Outputs"]["ApproverDecisions"][0])["Decision"] == "Reject"
    with pytest.raises(ClientError) as e:
        ssm.send_automation_signal(AutomationExecutionId=eid, SignalType="Approve")
    assert e.value.response["Error"]["Code"] == "InvalidAutomationSignalException"


def test_change_request_approve_records_approver(acct):
    create_doc(acct, "ProdAccess-Template", CHANGE_TEMPLATE, doc_type="Automation.ChangeTemplate")
    ssm = acct.client("ssm")
    approver = create_user(acct, "approver1")
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    eid = ssm.start_change_request_execution(
        DocumentName="ProdAccess-Template",
        ChangeRequestName="alice prod access",
        Runbooks=[{"DocumentName": "AWS-HelloWorld", "Parameters": {"UserName": ["alice"]}}],
        Parameters={"Reason": ["incident 42"]},
        ScheduledTime=start,
        ScheduledEndTime=start + datetime.timedelta(hours=2),
    )["AutomationExecutionId"]
    ex = ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]
    assert ex["AutomationExecutionStatus"] == "PendingApproval"
    assert ex["AutomationSubtype"] == "ChangeRequest"
    assert ex["ChangeRequestName"] == "alice prod access"
    assert ex["ExecutedBy"] == f"arn:aws:sts::{acct.id}:assumed-role/x/prodemu-test"
    assert ex["Parameters"] == {"Reason": ["incident 42"]}
    assert ex["Runbooks"][0]["Parameters"] == {"UserName": ["alice"]}
    assert ex["ScheduledTime"] == start
    acct.client("ssm", **approver).send_automation_signal(AutomationExecutionId=eid, SignalType="Approve", Payload={"Comment": ["looks fine"]})
    ex = ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]
    assert ex["AutomationExecutionStatus"] == "Success"
    step = _approval_step(ex)
    assert step["StepName"] == "ApproveAction1"
    assert step["Outputs"]["ApprovalStatus"] == ["Approved"]
    decision = json.loads(step["Outputs"]["ApproverDecisions"][0])
    assert decision["Approver"] == f"arn:aws:iam::{acct.id}:user/approver1"
    assert decision["Decision"] == "Approve"
    assert decision["Comment"] == "looks fine"
    assert decision["ApprovalDecisionTime"].endswith("Z")


def test_change_request_future_schedule_goes_scheduled_then_success(acct, control):
    create_doc(acct, "ProdAccess-T", CHANGE_TEMPLATE, doc_type="Automation.ChangeTemplate")
    ssm = acct.client("ssm")
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    eid = ssm.start_change_request_execution(DocumentName="ProdAccess-T", Runbooks=[{"DocumentName": "AWS-HelloWorld"}], ScheduledTime=when)["AutomationExecutionId"]
    ssm.send_automation_signal(AutomationExecutionId=eid, SignalType="Approve")
    assert ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]["AutomationExecutionStatus"] == "Scheduled"
    control.call("POST", "clock", {"offset_seconds": 7200})
    try:
        assert ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]["AutomationExecutionStatus"] == "Success"
    finally:
        control.call("POST", "clock", {"offset_seconds": 0})


def test_change_request_reject_is_rejected(acct):
    create_doc(acct, "ProdAccess-T", CHANGE_TEMPLATE, doc_type="Automation.ChangeTemplate")
    ssm = acct.client("ssm")
    eid = ssm.start_change_request_execution(DocumentName="ProdAccess-T", Runbooks=[{"DocumentName": "AWS-HelloWorld"}])["AutomationExecutionId"]
    ssm.send_automation_signal(AutomationExecutionId=eid, SignalType="Reject", Payload={"Comment": ["nope"]})
    ex = ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]
    assert ex["AutomationExecutionStatus"] == "Rejected"
    assert _approval_step(ex)["Outputs"]["ApprovalStatus"] == ["Rejected"]


def test_client_token_idempotent(acct):
    create_doc(acct, "ProdAccess-T", CHANGE_TEMPLATE, doc_type="Automation.ChangeTemplate")
    ssm = acct.client("ssm")
    kw = dict(DocumentName="ProdAccess-T", Runbooks=[{"DocumentName": "AWS-HelloWorld"}], ClientToken="11111111-2222-3333-4444-555555555555")
    a = ssm.start_change_request_execution(**kw)["AutomationExecutionId"]
    b = ssm.start_change_request_execution(**kw)["AutomationExecutionId"]
    assert a == b
    with pytest.raises(ClientError) as e:
        ssm.start_change_request_execution(**{**kw, "ChangeRequestName": "different"})
    assert e.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
    create_doc(acct, "ProdAccess-Approval2", APPROVAL_TEMPLATE)
    x = ssm.start_automation_execution(DocumentName="ProdAccess-Approval2", ClientToken="66666666-2222-3333-4444-555555555555")["AutomationExecutionId"]
    assert ssm.start_automation_execution(DocumentName="ProdAccess-Approval2", ClientToken="66666666-2222-3333-4444-555555555555")["AutomationExecutionId"] == x


def test_describe_automation_executions_filters(acct):
    create_doc(acct, "ProdAccess-A", APPROVAL_TEMPLATE)
    create_doc(acct, "Other-B", APPROVAL_TEMPLATE)
    ssm = acct.client("ssm")
    a = ssm.start_automation_execution(DocumentName="ProdAccess-A")["AutomationExecutionId"]
    b = ssm.start_automation_execution(DocumentName="Other-B")["AutomationExecutionId"]
    ssm.send_automation_signal(AutomationExecutionId=b, SignalType="Approve")
    def ids(filters):
        return {m["AutomationExecutionId"] for m in ssm.describe_automation_executions(Filters=filters)["AutomationExecutionMetadataList"]}
    assert ids([{"Key": "DocumentNamePrefix", "Values": ["ProdAccess-"]}]) == {a}
    assert ids([{"Key": "ExecutionStatus", "Values": ["Waiting"]}]) == {a}
    assert ids([{"Key": "ExecutionId", "Values": [b]}]) == {b}
    meta = ssm.describe_automation_executions(Filters=[{"Key": "ExecutionId", "Values": [a]}])["AutomationExecutionMetadataList"][0]
    assert meta["ExecutedBy"].endswith(":assumed-role/x/prodemu-test") and meta["AutomationType"] == "Local"


def test_control_api_times_out_and_cancels(acct, control):
    create_doc(acct, "ProdAccess-Approval2", APPROVAL_TEMPLATE)
    ssm = acct.client("ssm")
    a = ssm.start_automation_execution(DocumentName="ProdAccess-Approval2")["AutomationExecutionId"]
    b = ssm.start_automation_execution(DocumentName="ProdAccess-Approval2")["AutomationExecutionId"]
    control.call("POST", f"executions/{a}", {"status": "TimedOut"})
    assert ssm.get_automation_execution(AutomationExecutionId=a)["AutomationExecution"]["AutomationExecutionStatus"] == "TimedOut"
    ssm.stop_automation_execution(AutomationExecutionId=b)
    assert ssm.get_automation_execution(AutomationExecutionId=b)["AutomationExecution"]["AutomationExecutionStatus"] == "Cancelled"


def test_unknown_document_and_execution_errors(acct):
    ssm = acct.client("ssm")
    with pytest.raises(ClientError) as e:
        ssm.start_automation_execution(DocumentName="Nope")
    assert e.value.response["Error"]["Code"] == "AutomationDefinitionNotFoundException"
    with pytest.raises(ClientError) as e:
        ssm.get_automation_execution(AutomationExecutionId="00000000-0000-0000-0000-000000000000")
    assert e.value.response["Error"]["Code"] == "AutomationExecutionNotFoundException"


def test_only_listed_approvers_may_approve(acct):
    create_doc(acct, "ProdAccess-Approval2", APPROVAL_TEMPLATE)
    ssm = acct.client("ssm")
    mallory = create_user(acct, "mallory")
    create_user(acct, "boss")
    eid = ssm.start_automation_execution(DocumentName="ProdAccess-Approval2", Parameters={"Approver": [f"arn:aws:iam::{acct.id}:user/boss"]})["AutomationExecutionId"]
    with pytest.raises(ClientError) as e:
        acct.client("ssm", **mallory).send_automation_signal(AutomationExecutionId=eid, SignalType="Approve")
    assert e.value.response["Error"]["Code"] == "InvalidAutomationSignalException"
    assert ssm.get_automation_execution(AutomationExecutionId=eid)["AutomationExecution"]["AutomationExecutionStatus"] == "Waiting"
