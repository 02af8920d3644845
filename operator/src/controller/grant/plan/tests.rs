//! Planner tests: the grant's life over time, approval states and eligibility, without a client.

use super::*;
use crate::crd::ApprovalRef;
use std::collections::BTreeMap;

const CR: &str = "11111111-2222-3333-4444-555555555555";
const ALICE: &str = "arn:aws:iam::111111111111:user/alice";
const BOB: &str = "arn:aws:iam::111111111111:user/bob";
const CAROL: &str = "arn:aws:iam::111111111111:user/carol";

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn terms(mode: ApprovalMode) -> GroupTerms {
    GroupTerms {
        group_name: "ProductionAccess".into(),
        account_id: Some("111111111111".into()),
        max_duration: Duration::from_secs(8 * 3600),
        default_duration: Duration::from_secs(3600),
        mode,
        change_templates: vec!["ProdAccessTemplate".into()],
        automation_documents: vec![],
    }
}

fn spec() -> ProductionAccessGrantSpec {
    ProductionAccessGrantSpec {
        access_group: "production".into(),
        user: "alice".into(),
        duration: Some("1h".into()),
        not_before: None,
        reason: "investigate".into(),
        approval: Some(ApprovalRef {
            change_request_id: Some(CR.into()),
            ..Default::default()
        }),
        revoked: false,
    }
}

fn record(state: ApprovalState) -> ApprovalRecord {
    let mut parameters = BTreeMap::new();
    parameters.insert("UserName".to_string(), vec!["alice".to_string()]);
    parameters.insert(
        "GroupName".to_string(),
        vec!["ProductionAccess".to_string()],
    );
    ApprovalRecord {
        id: CR.into(),
        state,
        aws_status: format!("{state:?}"),
        document: "ProdAccessTemplate".into(),
        is_change_request: true,
        requested_by: Some(BOB.into()),
        approvers: if state == ApprovalState::Approved {
            vec![CAROL.into()]
        } else {
            vec![]
        },
        decided_at: None,
        scheduled_start: None,
        scheduled_end: None,
        parameters,
    }
}

fn facts(now: i64, approval: ApprovalFacts) -> GrantFacts {
    GrantFacts {
        now: t(now),
        namespace: "ops".into(),
        name: "alice".into(),
        uid: "uid-1".into(),
        generation: Some(1),
        deleting: false,
        eligibility: Eligibility::Eligible(terms(ApprovalMode::ChangeRequest)),
        approval,
        user: UserFacts::Exists { arn: ALICE.into() },
        member: false,
        approval_used_by: None,
        other_active_until: None,
        revoked_earlier: None,
    }
}

fn poll() -> PollSettings {
    PollSettings {
        min: Duration::from_secs(2),
        max: Duration::from_secs(30),
        resync: Duration::from_secs(60),
        add_margin: ADD_MARGIN,
    }
}

fn run(
    spec: &ProductionAccessGrantSpec,
    old: &ProductionAccessGrantStatus,
    f: &GrantFacts,
) -> GrantPlan {
    plan(spec, old, f, &poll())
}

fn reason(plan: &GrantPlan, type_: &str) -> String {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

fn adds(plan: &GrantPlan) -> bool {
    plan.actions
        .iter()
        .any(|a| matches!(a, GrantAction::AddToGroup { .. }))
}

/// Runs the planner from a pending approval to an approved, active grant at time `now`.
fn activated(now: i64) -> GrantPlan {
    let pending = run(
        &spec(),
        &Default::default(),
        &facts(0, ApprovalFacts::Found(record(ApprovalState::Pending))),
    );
    run(
        &spec(),
        &pending.status,
        &facts(now, ApprovalFacts::Found(record(ApprovalState::Approved))),
    )
}

#[test]
fn pending_approval_waits_and_polls_with_backoff() {
    let f = facts(0, ApprovalFacts::Found(record(ApprovalState::Pending)));
    let first = run(&spec(), &Default::default(), &f);
    assert_eq!(first.status.phase, GrantPhase::AwaitingApproval);
    assert!(first.actions.is_empty());
    assert_eq!(first.requeue, Some(Duration::from_secs(2)));
    let later = run(
        &spec(),
        &first.status,
        &facts(600, ApprovalFacts::Found(record(ApprovalState::Pending))),
    );
    assert_eq!(
        later.requeue,
        Some(Duration::from_secs(30)),
        "backs off to the maximum"
    );
}

#[test]
fn approval_grants_membership_with_expiry_guard_and_requeues_at_expiry() {
    let plan = activated(10);
    assert_eq!(plan.status.phase, GrantPhase::Active);
    assert_eq!(
        plan.actions,
        vec![
            GrantAction::ClaimApproval {
                approval_id: CR.into(),
                until: t(10) + SignedDuration::from_hours(8)
            },
            GrantAction::PutExpiryGuard {
                expiry: t(3610),
                send_by: t(3598)
            },
            GrantAction::AddToGroup { send_by: t(3598) },
        ]
    );
    let window = plan.status.window.clone().unwrap_or_else(|| unreachable!());
    assert_eq!((window.start.0, window.expiry.0), (t(10), t(3610)));
    assert_eq!(plan.audit, Some(Audit::Granted));
    assert_eq!(plan.status.approved_by.as_deref(), Some(CAROL));
    assert_eq!(
        plan.requeue,
        Some(Duration::from_secs(60)),
        "resync bounds the requeue"
    );
}

#[test]
fn requeue_lands_exactly_at_expiry_when_it_is_near() {
    let active = activated(10);
    let mut f = facts(3600, ApprovalFacts::Found(record(ApprovalState::Approved)));
    f.member = true;
    let plan = run(&spec(), &active.status, &f);
    assert_eq!(plan.requeue, Some(Duration::from_millis(10_001)));
    assert!(
        plan.actions.is_empty(),
        "a member in an active grant needs nothing"
    );
}

#[test]
fn expiry_revokes_terminates_sessions_and_removes_guard() {
    let active = activated(10);
    let mut f = facts(3611, ApprovalFacts::Found(record(ApprovalState::Approved)));
    f.member = true;
    let plan = run(&spec(), &active.status, &f);
    assert_eq!(plan.status.phase, GrantPhase::Expired);
    assert_eq!(
        plan.actions,
        vec![
            GrantAction::RemoveFromGroup,
            GrantAction::TerminateSessions,
            GrantAction::RemoveExpiryGuard
        ]
    );
    assert_eq!(plan.revoke_lag, Some(1.0));
    assert_eq!(plan.audit, Some(Audit::Revoked));
    assert_eq!(reason(&plan, "Ready"), "Expired");
    let approved = |plan: &GrantPlan| {
        let found = plan
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Approved");
        found.map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    assert_eq!(
        approved(&plan),
        approved(&active),
        "Approved still tells of the approval, not of the expiry"
    );
    // Looked at again shortly, in case a membership request sent earlier lands late.
    assert_eq!(plan.requeue, Some(CONFIRM_EVERY));
}

#[test]
fn terminal_phases_never_grant_again() {
    for phase in [GrantPhase::Expired, GrantPhase::Revoked, GrantPhase::Denied] {
        let old = ProductionAccessGrantStatus {
            phase,
            ..Default::default()
        };
        let plan = run(
            &spec(),
            &old,
            &facts(0, ApprovalFacts::Found(record(ApprovalState::Approved))),
        );
        assert_eq!(plan.status.phase, phase);
        assert!(plan.actions.is_empty(), "{phase:?} must not act");
    }
}

#[test]
fn rejected_cancelled_and_failed_approvals_deny() {
    for state in [ApprovalState::Rejected, ApprovalState::Withdrawn] {
        let plan = run(
            &spec(),
            &Default::default(),
            &facts(0, ApprovalFacts::Found(record(state))),
        );
        assert_eq!(plan.status.phase, GrantPhase::Denied, "{state:?}");
        assert!(plan.actions.is_empty());
    }
}

#[test]
fn withdrawn_approval_revokes_an_active_grant() {
    let active = activated(10);
    let mut f = facts(100, ApprovalFacts::Found(record(ApprovalState::Withdrawn)));
    f.member = true;
    let plan = run(&spec(), &active.status, &f);
    assert_eq!(plan.status.phase, GrantPhase::Revoked);
    assert_eq!(reason(&plan, "Granted"), "ApprovalWithdrawn");
    assert_eq!(reason(&plan, "Approved"), "ApprovalWithdrawn");
    assert!(plan.actions.contains(&GrantAction::RemoveFromGroup));
}

#[test]
fn self_approval_and_approval_by_the_user_are_refused() {
    let mut by_requester = record(ApprovalState::Approved);
    by_requester.approvers = vec![BOB.into()];
    let mut by_user = record(ApprovalState::Approved);
    by_user.approvers = vec!["arn:aws:sts::111111111111:assumed-role/Approvers/alice".into()];
    for rec in [by_requester, by_user] {
        let plan = run(
            &spec(),
            &Default::default(),
            &facts(0, ApprovalFacts::Found(rec)),
        );
        assert_eq!(plan.status.phase, GrantPhase::Denied);
        assert_eq!(reason(&plan, "Ready"), "SelfApproval");
        assert!(plan.actions.is_empty());
    }
}

#[test]
fn approval_for_another_user_or_group_is_refused() {
    let mut other_user = record(ApprovalState::Approved);
    other_user
        .parameters
        .insert("UserName".into(), vec!["mallory".into()]);
    let mut other_group = record(ApprovalState::Approved);
    other_group
        .parameters
        .insert("GroupName".into(), vec!["Admins".into()]);
    let mut no_params = record(ApprovalState::Approved);
    no_params.parameters.clear();
    for rec in [other_user, other_group, no_params] {
        let plan = run(
            &spec(),
            &Default::default(),
            &facts(0, ApprovalFacts::Found(rec)),
        );
        assert_eq!(reason(&plan, "Ready"), "ApprovalMismatch");
        assert!(plan.actions.is_empty());
    }
}

#[test]
fn one_approval_backs_one_grant() {
    let mut f = facts(0, ApprovalFacts::Found(record(ApprovalState::Approved)));
    f.approval_used_by = Some("ops/other".into());
    let plan = run(&spec(), &Default::default(), &f);
    assert_eq!(plan.status.phase, GrantPhase::Denied);
    assert_eq!(reason(&plan, "Ready"), "ApprovalAlreadyUsed");
}

#[test]
fn window_starts_at_latest_of_approval_not_before_and_schedule_and_ends_by_schedule() {
    let mut rec = record(ApprovalState::Approved);
    rec.scheduled_start = Some(t(100));
    rec.scheduled_end = Some(t(1000));
    let mut s = spec();
    s.not_before = Some(t(50).to_string());
    let plan = run(
        &s,
        &Default::default(),
        &facts(10, ApprovalFacts::Found(rec)),
    );
    assert_eq!(plan.status.phase, GrantPhase::Scheduled);
    let window = plan.status.window.clone().unwrap_or_else(|| unreachable!());
    assert_eq!((window.start.0, window.expiry.0), (t(100), t(1000)));
    assert_eq!(plan.requeue, Some(Duration::from_millis(60_000)));
    assert!(!adds(&plan));
}

#[test]
fn closed_change_window_denies() {
    let mut rec = record(ApprovalState::Approved);
    rec.scheduled_end = Some(t(5));
    let plan = run(
        &spec(),
        &Default::default(),
        &facts(10, ApprovalFacts::Found(rec)),
    );
    assert_eq!(plan.status.phase, GrantPhase::Denied);
    assert_eq!(reason(&plan, "Ready"), "WindowClosed");
}

#[test]
fn widening_an_approved_grant_is_refused_and_changes_nothing() {
    let active = activated(10);
    let mut wider = spec();
    wider.user = "mallory".into();
    wider.duration = Some("8h".into());
    let mut f = facts(20, ApprovalFacts::Found(record(ApprovalState::Approved)));
    f.member = true;
    let plan = run(&wider, &active.status, &f);
    assert_eq!(plan.status.phase, GrantPhase::Active);
    assert!(plan.actions.is_empty());
    assert_eq!(reason(&plan, "SpecAccepted"), "WideningRefused");
    let window = plan.status.window.clone().unwrap_or_else(|| unreachable!());
    assert_eq!(window.expiry.0, t(3610), "expiry unchanged");
    assert_eq!(effective_spec(&wider, Some(&plan.status)).user, "alice");
}

#[test]
fn shortening_an_active_grant_moves_expiry_earlier() {
    let active = activated(10);
    let mut shorter = spec();
    shorter.duration = Some("30m".into());
    let mut f = facts(20, ApprovalFacts::Found(record(ApprovalState::Approved)));
    f.member = true;
    let plan = run(&shorter, &active.status, &f);
    let window = plan.status.window.clone().unwrap_or_else(|| unreachable!());
    assert_eq!(window.expiry.0, t(1810));
    assert_eq!(reason(&plan, "SpecAccepted"), "");
}

#[test]
fn member_removed_by_hand_is_added_back() {
    let active = activated(10);
    let plan = run(
        &spec(),
        &active.status,
        &facts(30, ApprovalFacts::Found(record(ApprovalState::Approved))),
    );
    assert!(adds(&plan));
    assert_eq!(
        plan.events.last().map(|e| e.reason),
        Some("MembershipRestored")
    );
}

#[test]
fn no_add_is_sent_that_could_land_after_the_window() {
    // Window 10..3610: with 12 s or less left an add could reach IAM after the revocation.
    let active = activated(10);
    let late = facts(3600, ApprovalFacts::Found(record(ApprovalState::Approved)));
    let plan = run(&spec(), &active.status, &late);
    assert!(!adds(&plan), "member removed by hand is not put back");
    assert_eq!(plan.status.phase, GrantPhase::Active);
    assert_eq!(plan.requeue, Some(Duration::from_millis(10_001)));

    let pending = run(
        &spec(),
        &Default::default(),
        &facts(0, ApprovalFacts::Found(record(ApprovalState::Pending))),
    );
    let mut status = activated(10).status;
    status.phase = pending.status.phase;
    let plan = run(&spec(), &status, &late);
    assert!(
        !adds(&plan),
        "a first add this close to the end is not sent"
    );
    assert_eq!(plan.status.phase, status.phase);
    assert_eq!(reason(&plan, "Granted"), "WindowTooShort");
    let ended = facts(3610, ApprovalFacts::Found(record(ApprovalState::Approved)));
    let plan = run(&spec(), &plan.status, &ended);
    assert_eq!(
        plan.status.phase,
        GrantPhase::Expired,
        "it ends as usual at expiry"
    );

    let in_time = facts(3597, ApprovalFacts::Found(record(ApprovalState::Approved)));
    let plan = run(&spec(), &status, &in_time);
    assert!(plan
        .actions
        .contains(&GrantAction::AddToGroup { send_by: t(3598) }));
}

#[test]
fn revoked_flag_and_deletion_revoke_active_access() {
    let active = activated(10);
    let mut revoked = spec();
    revoked.revoked = true;
    let mut f = facts(30, ApprovalFacts::Found(record(ApprovalState::Approved)));
    f.member = true;
    let plan = run(&revoked, &active.status, &f);
    assert_eq!(plan.status.phase, GrantPhase::Revoked);
    assert!(plan.actions.contains(&GrantAction::RemoveFromGroup));
    f.deleting = true;
    let plan = run(&spec(), &active.status, &f);
    assert_eq!(plan.status.phase, GrantPhase::Revoked);
}

#[test]
fn another_active_grant_keeps_the_membership_at_revocation() {
    let active = activated(10);
    let mut f = facts(4000, ApprovalFacts::Found(record(ApprovalState::Approved)));
    f.member = true;
    f.other_active_until = Some(t(9000));
    let plan = run(&spec(), &active.status, &f);
    assert_eq!(plan.status.phase, GrantPhase::Expired);
    assert!(plan.actions.is_empty());
}

#[test]
fn bad_input_fails_with_specific_reasons_and_no_actions() {
    let mut long = spec();
    long.duration = Some("9h".into());
    let mut bad = spec();
    bad.duration = Some("0m".into());
    let missing_user = {
        let mut f = facts(0, ApprovalFacts::Found(record(ApprovalState::Approved)));
        f.user = UserFacts::Missing;
        f
    };
    let cases: Vec<(ProductionAccessGrantSpec, GrantFacts, &str)> = vec![
        (long, facts(0, ApprovalFacts::NotNeeded), "DurationTooLong"),
        (bad, facts(0, ApprovalFacts::NotNeeded), "InvalidDuration"),
        (spec(), missing_user, "UserNotFound"),
        (
            spec(),
            facts(0, ApprovalFacts::NotFound(CR.into())),
            "ApprovalNotFound",
        ),
        (
            spec(),
            GrantFacts {
                eligibility: Eligibility::Ineligible {
                    reason: "NamespaceNotAllowed",
                    message: "no".into(),
                },
                ..facts(0, ApprovalFacts::NotNeeded)
            },
            "NamespaceNotAllowed",
        ),
    ];
    for (s, f, expected) in cases {
        let plan = run(&s, &Default::default(), &f);
        assert_eq!(plan.status.phase, GrantPhase::Failed, "{expected}");
        assert_eq!(reason(&plan, "Ready"), expected);
        assert!(plan.actions.is_empty(), "{expected}");
    }
}

#[test]
fn missing_approval_opens_a_change_request_from_the_template() {
    let mut s = spec();
    s.approval = None;
    let plan = run(&s, &Default::default(), &facts(0, ApprovalFacts::NoneGiven));
    assert_eq!(plan.status.phase, GrantPhase::AwaitingApproval);
    assert_eq!(
        plan.actions,
        vec![GrantAction::OpenChangeRequest {
            template: "ProdAccessTemplate".into(),
            duration: Duration::from_secs(3600),
            asked_at: t(0),
        }]
    );
    // A retry (the request's answer was lost) asks again with the time first recorded.
    let again = run(&s, &plan.status, &facts(7, ApprovalFacts::NoneGiven));
    assert_eq!(
        again.actions,
        vec![GrantAction::OpenChangeRequest {
            template: "ProdAccessTemplate".into(),
            duration: Duration::from_secs(3600),
            asked_at: t(0),
        }]
    );
    let mut f = facts(0, ApprovalFacts::NoneGiven);
    let mut no_template = terms(ApprovalMode::Automation);
    no_template.change_templates.clear();
    f.eligibility = Eligibility::Eligible(no_template);
    let plan = run(&s, &Default::default(), &f);
    assert_eq!(reason(&plan, "Ready"), "ApprovalMissing");
}

#[test]
fn groups_without_approval_grant_at_once() {
    let mut s = spec();
    s.approval = None;
    let mut f = facts(0, ApprovalFacts::NotNeeded);
    f.eligibility = Eligibility::Eligible(terms(ApprovalMode::None));
    let plan = run(&s, &Default::default(), &f);
    assert_eq!(plan.status.phase, GrantPhase::Active);
    assert!(adds(&plan));
    assert!(!plan
        .actions
        .iter()
        .any(|a| matches!(a, GrantAction::ClaimApproval { .. })));
}

#[test]
fn ineligible_active_grant_is_revoked() {
    let active = activated(10);
    let mut f = facts(30, ApprovalFacts::Found(record(ApprovalState::Approved)));
    f.member = true;
    f.eligibility = Eligibility::Ineligible {
        reason: "NamespaceNotAllowed",
        message: "x".into(),
    };
    let plan = run(&spec(), &active.status, &f);
    assert_eq!(plan.status.phase, GrantPhase::Revoked);
    assert!(plan.actions.contains(&GrantAction::RemoveFromGroup));
}

#[test]
fn a_final_grant_keeps_the_reason_it_ended_with() {
    let mut by_requester = record(ApprovalState::Approved);
    by_requester.approvers = vec![BOB.into()];
    let denied = run(
        &spec(),
        &Default::default(),
        &facts(0, ApprovalFacts::Found(by_requester.clone())),
    );
    let mut later = facts(30, ApprovalFacts::Found(by_requester));
    later.generation = Some(2);
    let again = run(&spec(), &denied.status, &later);
    assert_eq!(again.status.phase, GrantPhase::Denied);
    assert_eq!(reason(&again, "Ready"), "SelfApproval");
    let ready = again.status.conditions.iter().find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.status.as_str()), Some("False"));
    assert_eq!(ready.and_then(|c| c.observed_generation), Some(2));
    assert!(again.actions.is_empty());
}

#[test]
fn two_approval_ids_open_nothing_and_fail() {
    let mut both = spec();
    both.approval = Some(ApprovalRef {
        change_request_id: Some(CR.into()),
        automation_execution_id: Some(CR.into()),
    });
    let plan = run(
        &both,
        &Default::default(),
        &facts(0, ApprovalFacts::NoneGiven),
    );
    assert_eq!(plan.status.phase, GrantPhase::Failed);
    assert_eq!(reason(&plan, "Ready"), "ApprovalAmbiguous");
    assert!(plan.actions.is_empty());
}

#[test]
fn a_change_request_scheduled_at_the_end_of_time_does_not_overflow() {
    let mut late = record(ApprovalState::Approved);
    let end_of_time = Timestamp::MAX - SignedDuration::from_secs(60);
    late.scheduled_start = Some(end_of_time);
    late.scheduled_end = Some(end_of_time);
    let plan = run(
        &spec(),
        &Default::default(),
        &facts(0, ApprovalFacts::Found(late)),
    );
    assert_eq!(plan.status.phase, GrantPhase::Denied);
    assert_eq!(reason(&plan, "Ready"), "WindowClosed");
}

#[test]
fn an_approval_covers_at_most_the_group_maximum_after_its_decision() {
    let mut rec = record(ApprovalState::Approved);
    rec.decided_at = Some(t(0));
    let fresh = run(
        &spec(),
        &Default::default(),
        &facts(100, ApprovalFacts::Found(rec.clone())),
    );
    let window = fresh
        .status
        .window
        .clone()
        .unwrap_or_else(|| unreachable!());
    assert_eq!((window.start.0, window.expiry.0), (t(100), t(3700)));
    assert!(fresh.actions.contains(&GrantAction::ClaimApproval {
        approval_id: CR.into(),
        until: t(8 * 3600),
    }));

    // The grant is gone, the ledger has dropped the approval, and the same manifest is applied
    // again: the old approval opens no new window.
    let replay = run(
        &spec(),
        &Default::default(),
        &facts(8 * 3600 + 10, ApprovalFacts::Found(rec.clone())),
    );
    assert_eq!(replay.status.phase, GrantPhase::Denied);
    assert_eq!(reason(&replay, "Ready"), "WindowClosed");
    assert!(!adds(&replay));

    // Nor can an earliest start far after the approval stretch it.
    let mut late = spec();
    late.not_before = Some(t(8 * 3600 - 600).to_string());
    let stretched = run(
        &late,
        &Default::default(),
        &facts(100, ApprovalFacts::Found(rec)),
    );
    let window = stretched
        .status
        .window
        .clone()
        .unwrap_or_else(|| unreachable!());
    assert_eq!(window.expiry.0, t(8 * 3600));
}

#[test]
fn ineligible_grants_look_again_after_the_resync() {
    let mut f = facts(0, ApprovalFacts::NotNeeded);
    f.eligibility = Eligibility::Ineligible {
        reason: "GroupNotReady",
        message: "not yet".into(),
    };
    let plan = run(&spec(), &Default::default(), &f);
    assert_eq!(plan.status.phase, GrantPhase::Failed);
    assert_eq!(plan.requeue, Some(Duration::from_secs(60)));
}

#[test]
fn failed_grants_look_again_for_fixes_made_outside_the_grant() {
    let mut f = facts(0, ApprovalFacts::Found(record(ApprovalState::Approved)));
    f.user = UserFacts::Missing;
    let plan = run(&spec(), &Default::default(), &f);
    assert_eq!(plan.status.phase, GrantPhase::Failed);
    assert_eq!(plan.requeue, Some(Duration::from_secs(300)));
}

#[test]
fn a_late_membership_after_revocation_is_removed_again_then_left_alone() {
    let active = activated(10);
    let mut f = facts(3611, ApprovalFacts::Found(record(ApprovalState::Approved)));
    f.member = true;
    let expired = run(&spec(), &active.status, &f);
    // 4 s later an AddUserToGroup attempt the SDK had given up on lands.
    let mut late = facts(3615, ApprovalFacts::NotNeeded);
    late.member = true;
    let again = run(&spec(), &expired.status, &late);
    assert_eq!(again.status.phase, GrantPhase::Expired);
    assert_eq!(
        again.actions,
        vec![GrantAction::RemoveFromGroup, GrantAction::TerminateSessions]
    );
    assert!(again
        .events
        .iter()
        .any(|e| e.reason == "StrayMembershipRemoved"));
    assert_eq!(again.audit, None);
    assert_eq!(again.status.revoked_at, expired.status.revoked_at);
    assert_eq!(again.requeue, Some(CONFIRM_EVERY));
    // Not a member: nothing to do, one more look while the window lasts.
    let quiet = run(
        &spec(),
        &expired.status,
        &facts(3621, ApprovalFacts::NotNeeded),
    );
    assert!(quiet.actions.is_empty());
    assert_eq!(quiet.requeue, Some(Duration::from_millis(2001)));
    // After the window the grant is left alone, as every final grant.
    let mut done = facts(3630, ApprovalFacts::NotNeeded);
    done.member = true;
    let done = run(&spec(), &expired.status, &done);
    assert!(done.actions.is_empty());
    assert_eq!(done.requeue, None);
}

#[test]
fn another_active_grant_keeps_a_late_membership() {
    let active = activated(10);
    let expired = run(
        &spec(),
        &active.status,
        &facts(3611, ApprovalFacts::NotNeeded),
    );
    let mut late = facts(3614, ApprovalFacts::NotNeeded);
    late.member = true;
    late.other_active_until = Some(t(7200));
    let again = run(&spec(), &expired.status, &late);
    assert!(again.actions.is_empty());
}

#[test]
fn a_window_recorded_before_the_operator_stopped_is_revoked_at_expiry() {
    // The window was written, then the operator stopped before the grant showed Active: the
    // guard (and perhaps the membership) may exist.
    let mut decided = activated(10).status;
    decided.phase = GrantPhase::Pending;
    decided.granted_at = None;
    let plan = run(&spec(), &decided, &facts(3611, ApprovalFacts::NotNeeded));
    assert_eq!(plan.status.phase, GrantPhase::Expired);
    assert_eq!(
        plan.actions,
        vec![
            GrantAction::RemoveFromGroup,
            GrantAction::TerminateSessions,
            GrantAction::RemoveExpiryGuard
        ]
    );
}

#[test]
fn a_revocation_done_before_a_lost_status_write_keeps_its_time_and_is_not_repeated() {
    let active = activated(10);
    let mut f = facts(3625, ApprovalFacts::NotNeeded);
    f.revoked_earlier = Some(t(3611));
    let plan = run(&spec(), &active.status, &f);
    assert_eq!(plan.status.phase, GrantPhase::Expired);
    assert_eq!(plan.status.revoked_at, Some(Time(t(3611))));
    assert_eq!(plan.revoke_lag, Some(1.0));
    assert!(plan.actions.is_empty());
}

#[test]
fn deleting_or_revoking_a_grant_cancels_the_change_request_opened_for_it() {
    let opened = ProductionAccessGrantStatus {
        phase: GrantPhase::AwaitingApproval,
        approval_id: Some("cr-1".into()),
        change_request_asked_at: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
        ..Default::default()
    };
    let cancel = GrantAction::CancelChangeRequest { id: "cr-1".into() };
    let mut f = facts(10, ApprovalFacts::Found(record(ApprovalState::Pending)));
    f.deleting = true;
    let plan = run(&spec(), &opened, &f);
    assert_eq!(plan.status.phase, GrantPhase::Revoked);
    assert_eq!(plan.actions, vec![cancel.clone()]);
    let mut revoked = spec();
    revoked.revoked = true;
    let f = facts(10, ApprovalFacts::Found(record(ApprovalState::Pending)));
    assert_eq!(run(&revoked, &opened, &f).actions, vec![cancel]);
    // One the user named is theirs, not the operator's to cancel.
    let named = ProductionAccessGrantStatus {
        change_request_asked_at: None,
        ..opened
    };
    assert!(run(&revoked, &named, &f).actions.is_empty());
}
