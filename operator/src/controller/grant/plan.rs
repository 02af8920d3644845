//! The grant planner: a pure function from a grant's spec, its last status and the observed
//! facts to the actions that bring AWS in line and the status to write.
//!
//! It takes no client and no clock (the time is a fact), so every rule of the grant's life is
//! unit-tested here: eligibility, approval, the window, widening, expiry and revocation.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

use super::facts::{
    ApprovalFacts, ApprovalRecord, ApprovalState, Eligibility, GrantFacts, GroupTerms, UserFacts,
};
use crate::crd::{
    parse_duration, set_condition, ApprovalMode, ApprovedTerms, ConditionExt,
    ConditionStatus as Cs, GrantPhase, GrantWindow, ProductionAccessGrantSpec,
    ProductionAccessGrantStatus,
};

/// A change in AWS the reconcile must make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantAction {
    /// Open a change request from `template` for this grant (client token = grant UID).
    OpenChangeRequest {
        template: String,
        duration: Duration,
        /// The scheduled start to send; the same on every retry.
        asked_at: Timestamp,
    },
    /// Record in the group's ledger that this approval backs this grant.
    ClaimApproval {
        approval_id: String,
        until: Timestamp,
    },
    /// Add the user to the group; no attempt may be sent after `send_by` (see
    /// [`ADD_MARGIN`]).
    AddToGroup {
        send_by: Timestamp,
    },
    /// Attach the user policy that denies session actions after `expiry`; no attempt may be
    /// sent after `send_by`.
    PutExpiryGuard {
        expiry: Timestamp,
        send_by: Timestamp,
    },
    RemoveFromGroup,
    TerminateSessions,
    RemoveExpiryGuard,
    /// Cancel the change request the operator opened for this grant, which nobody approved
    /// yet: the grant was deleted or revoked, so approvers need not decide on it.
    CancelChangeRequest {
        id: String,
    },
}

/// An Event the reconcile should publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// What kind of audit record the change is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audit {
    Granted,
    Revoked,
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantPlan {
    pub actions: Vec<GrantAction>,
    pub status: ProductionAccessGrantStatus,
    /// When to look again; `None` means only on change.
    pub requeue: Option<Duration>,
    pub events: Vec<PlannedEvent>,
    pub audit: Option<Audit>,
    /// Seconds from expiry to revocation, when this plan revokes an expired grant.
    pub revoke_lag: Option<f64>,
}

/// Plans one reconcile of a grant.
pub fn plan(
    spec: &ProductionAccessGrantSpec,
    old: &ProductionAccessGrantStatus,
    facts: &GrantFacts,
    poll: &PollSettings,
) -> GrantPlan {
    let mut planner = Planner::new(old, facts);
    planner.run(spec, poll);
    planner.finish()
}

/// The spec in force: once approved, the approved user and group win over any later edit.
/// Observation uses this too, so that an edited user name is never looked up or granted.
pub fn effective_spec(
    spec: &ProductionAccessGrantSpec,
    status: Option<&ProductionAccessGrantStatus>,
) -> ProductionAccessGrantSpec {
    let mut effective = spec.clone();
    if let Some(approved) = status.and_then(|s| s.approved.as_ref()) {
        effective.user = approved.user.clone();
        effective.access_group = approved.access_group.clone();
    }
    effective
}

/// How often to poll a pending approval.
#[derive(Clone, Debug, PartialEq)]
pub struct PollSettings {
    pub min: Duration,
    pub max: Duration,
    /// Upper bound on any requeue of a live grant, so drift is corrected.
    pub resync: Duration,
    /// No membership or guard request is sent in the last this-much of a window.
    pub add_margin: Duration,
}

struct Planner<'a> {
    facts: &'a GrantFacts,
    was: GrantPhase,
    status: ProductionAccessGrantStatus,
    actions: Vec<GrantAction>,
    events: Vec<PlannedEvent>,
    requeue: Option<Duration>,
    audit: Option<Audit>,
    revoke_lag: Option<f64>,
    refused_edit: Option<String>,
    /// Upper bound on any requeue of a live grant.
    poll_resync: Duration,
}

impl<'a> Planner<'a> {
    fn new(old: &ProductionAccessGrantStatus, facts: &'a GrantFacts) -> Self {
        let mut status = old.clone();
        status.observed_generation = facts.generation;
        Self {
            facts,
            was: old.phase,
            status,
            actions: Vec::new(),
            events: Vec::new(),
            requeue: None,
            audit: None,
            revoke_lag: None,
            refused_edit: None,
            poll_resync: Duration::from_secs(60),
        }
    }

    fn finish(mut self) -> GrantPlan {
        match self.refused_edit.take() {
            Some(message) => {
                self.condition("SpecAccepted", Cs::False, "WideningRefused", &message);
                let current = self.status.message.take().unwrap_or_default();
                self.status.message = Some(format!("{message} {current}").trim().to_string());
            }
            None => {
                self.status.conditions.retain(|c| c.type_ != "SpecAccepted");
            }
        }
        GrantPlan {
            actions: self.actions,
            status: self.status,
            requeue: self.requeue,
            events: self.events,
            audit: self.audit,
            revoke_lag: self.revoke_lag,
        }
    }

    fn run(&mut self, requested: &ProductionAccessGrantSpec, poll: &PollSettings) {
        self.poll_resync = poll.resync;
        let spec = &effective_spec(requested, Some(&self.status));
        if self.was.is_terminal() {
            return self.stay_terminal();
        }
        if self.facts.deleting || spec.revoked {
            let why = if self.facts.deleting {
                "the grant was deleted"
            } else {
                "spec.revoked"
            };
            // Only a request the operator opened (one the user named is theirs), while
            // nobody has approved it.
            let opened_here = self.status.change_request_asked_at.is_some();
            if opened_here && self.status.approved_at.is_none() {
                if let Some(id) = self.status.approval_id.clone() {
                    self.actions.push(GrantAction::CancelChangeRequest { id });
                }
            }
            return self.end(
                GrantPhase::Revoked,
                "RevokedByUser",
                format!("Revoked: {why}."),
            );
        }
        let terms = match &self.facts.eligibility {
            Eligibility::Eligible(terms) => terms.clone(),
            Eligibility::Ineligible { reason, message } => {
                return self.ineligible(reason, message.clone());
            }
        };
        let Some(duration) = self.duration(spec, &terms) else {
            return;
        };
        if let UserFacts::Missing = self.facts.user {
            let msg = format!(
                "IAM user {:?} does not exist in the group's account.",
                spec.user
            );
            return self.fail("UserNotFound", msg);
        }
        self.refuse_widening(requested, duration);
        let Some(approved_at) = self.approval(spec, &terms, duration, poll) else {
            return;
        };
        let Some(window) = self.window(spec, duration, &terms, approved_at) else {
            return;
        };
        self.follow_window(spec, &terms, window, poll);
    }

    /// A final phase never grants again. Its conditions keep the reason it ended with (a
    /// Denied grant stays Ready=False with, say, `SelfApproval`); only the generation they
    /// describe moves on.
    fn stay_terminal(&mut self) {
        for condition in &mut self.status.conditions {
            condition.observed_generation = self.facts.generation;
        }
        self.confirm_revocation();
        if self.status.conditions.iter().all(|c| c.type_ != "Ready") {
            let phase = self.status.phase;
            let ready = Cs::from_bool(phase != GrantPhase::Denied);
            self.condition("Ready", ready, phase.as_str(), "The grant is finished.");
        }
    }

    fn duration(
        &mut self,
        spec: &ProductionAccessGrantSpec,
        terms: &GroupTerms,
    ) -> Option<Duration> {
        let (reason, msg) = match spec.duration.as_deref().map(parse_duration) {
            None => return Some(terms.default_duration),
            Some(Ok(duration)) if duration <= terms.max_duration => return Some(duration),
            Some(Ok(duration)) => {
                let msg = format!(
                    "spec.duration {} exceeds the group's maximum of {}.",
                    crate::crd::format_duration(duration),
                    crate::crd::format_duration(terms.max_duration),
                );
                ("DurationTooLong", msg)
            }
            Some(Err(err)) => ("InvalidDuration", format!("spec.duration: {err}.")),
        };
        // After approval a bad edit changes nothing: the approved duration stays in force.
        if let Some(approved) = &self.status.approved {
            self.refused_edit = Some(format!("Edit refused: {msg}"));
            return Some(Duration::from_secs(approved.duration_seconds.max(0) as u64));
        }
        self.fail(reason, msg);
        None
    }

    /// Once approved, user, group and approval are fixed and the duration can only shrink.
    fn refuse_widening(&mut self, spec: &ProductionAccessGrantSpec, duration: Duration) {
        let Some(approved) = &self.status.approved else {
            return;
        };
        let spec_approval = spec.approval.as_ref().and_then(|a| a.id()).unwrap_or("");
        let mut changed = Vec::new();
        if spec.user != approved.user {
            changed.push(format!(
                "user {:?} (approved {:?})",
                spec.user, approved.user
            ));
        }
        if spec.access_group != approved.access_group {
            changed.push(format!("accessGroup {:?}", spec.access_group));
        }
        if !spec_approval.is_empty() && spec_approval != approved.approval_id {
            changed.push(format!("approval {spec_approval:?}"));
        }
        if duration.as_secs() as i64 > approved.duration_seconds {
            changed.push(format!(
                "duration {}",
                crate::crd::format_duration(duration)
            ));
        }
        if changed.is_empty() {
            return;
        }
        let message = format!(
            "Edit refused: an approved grant cannot be widened ({}); the approved terms stay in \
             force. Create a new grant for new terms.",
            changed.join(", ")
        );
        if self
            .status
            .conditions
            .iter()
            .all(|c| c.type_ != "SpecAccepted")
        {
            let note = message.clone();
            self.events.push(PlannedEvent {
                warning: true,
                reason: "WideningRefused",
                note,
            });
        }
        self.refused_edit = Some(message);
    }

    /// Decides approval. Returns when it was approved, or `None` when the plan ends here.
    fn approval(
        &mut self,
        spec: &ProductionAccessGrantSpec,
        terms: &GroupTerms,
        duration: Duration,
        poll: &PollSettings,
    ) -> Option<Timestamp> {
        if let Some(at) = self.status.approved_at.as_ref().map(|t| t.0) {
            // Approval was accepted before; re-check only that it was not withdrawn.
            if let ApprovalFacts::Found(record) = &self.facts.approval {
                if matches!(
                    record.state,
                    ApprovalState::Rejected | ApprovalState::Withdrawn
                ) {
                    let msg = format!("Approval {} is now {}.", record.id, record.aws_status);
                    self.end(GrantPhase::Revoked, "ApprovalWithdrawn", msg);
                    return None;
                }
            }
            return Some(at);
        }
        let record = match &self.facts.approval {
            ApprovalFacts::NotNeeded => {
                return Some(self.accept_approval(spec, terms, None, duration));
            }
            ApprovalFacts::NoneGiven if both_approval_ids(spec) => {
                let msg = "spec.approval names both a change request and an automation \
                           execution; keep the one that approves this grant."
                    .to_string();
                self.fail("ApprovalAmbiguous", msg);
                return None;
            }
            ApprovalFacts::NoneGiven => {
                self.no_approval_given(terms, duration);
                return None;
            }
            ApprovalFacts::NotFound(id) => {
                let msg = format!("Approval {id} does not exist in the group's account.");
                self.fail("ApprovalNotFound", msg);
                return None;
            }
            ApprovalFacts::Found(record) => record.clone(),
        };
        self.status.approval_id = Some(record.id.clone());
        self.status.requested_by = record.requested_by.clone();
        match record.state {
            ApprovalState::Pending => {
                self.awaiting(&record, poll);
                None
            }
            ApprovalState::Rejected | ApprovalState::Withdrawn => {
                let msg = format!("Approval {} is {}.", record.id, record.aws_status);
                self.end(GrantPhase::Denied, "ApprovalRejected", msg);
                None
            }
            ApprovalState::Approved => {
                if let Some((reason, msg)) = self.unacceptable(spec, terms, &record) {
                    self.end(GrantPhase::Denied, reason, msg);
                    return None;
                }
                Some(self.accept_approval(spec, terms, Some(&record), duration))
            }
        }
    }

    fn no_approval_given(&mut self, terms: &GroupTerms, duration: Duration) {
        match (terms.mode, terms.change_templates.first()) {
            (ApprovalMode::ChangeRequest, Some(template)) => {
                let asked = self.status.change_request_asked_at.as_ref();
                let asked_at = asked.map_or(self.facts.now, |t| t.0);
                self.status.change_request_asked_at = Some(Time(asked_at));
                self.actions.push(GrantAction::OpenChangeRequest {
                    template: template.clone(),
                    duration,
                    asked_at,
                });
                self.status.phase = GrantPhase::AwaitingApproval;
                let msg = format!("Opening a change request from template {template}.");
                self.condition("Approved", Cs::False, "ChangeRequestOpening", &msg);
                self.condition("Ready", Cs::False, "AwaitingApproval", &msg);
                self.status.message = Some(msg);
                self.requeue = Some(Duration::from_secs(1));
            }
            (mode, _) => {
                let field = match mode {
                    ApprovalMode::Automation => "spec.approval.automationExecutionId",
                    _ => "spec.approval.changeRequestId",
                };
                let msg = format!(
                    "The group requires approval; set {field} (the group names no change \
                     template the operator could open a request from)."
                );
                self.fail("ApprovalMissing", msg);
            }
        }
    }

    fn awaiting(&mut self, record: &ApprovalRecord, poll: &PollSettings) {
        self.status.phase = GrantPhase::AwaitingApproval;
        let msg = format!(
            "Waiting for approval of {} (AWS status {}).",
            record.id, record.aws_status
        );
        self.condition("Approved", Cs::False, "AwaitingApproval", &msg);
        self.condition("Granted", Cs::False, "AwaitingApproval", &msg);
        self.condition("Ready", Cs::False, "AwaitingApproval", &msg);
        self.status.message = Some(msg);
        self.requeue = Some(poll_interval(self.facts.now, &self.status, poll));
    }

    /// Reasons an approved request still cannot back this grant.
    fn unacceptable(
        &self,
        spec: &ProductionAccessGrantSpec,
        terms: &GroupTerms,
        record: &ApprovalRecord,
    ) -> Option<(&'static str, String)> {
        let id = &record.id;
        let wanted_kind = terms.mode == ApprovalMode::ChangeRequest;
        if terms.mode != ApprovalMode::None && record.is_change_request != wanted_kind {
            let msg = format!("Approval {id} is not of the kind the group requires.");
            return Some(("ApprovalKindMismatch", msg));
        }
        let allowed = match terms.mode {
            ApprovalMode::ChangeRequest => &terms.change_templates,
            _ => &terms.automation_documents,
        };
        if !allowed.is_empty() && !allowed.contains(&record.document) {
            let msg = format!(
                "Approval {id} uses {:?}, which the group does not accept.",
                record.document
            );
            return Some(("ApprovalTemplateNotAllowed", msg));
        }
        if let Some(problem) = parameter_mismatch(record, &spec.user, &terms.group_name) {
            return Some(("ApprovalMismatch", format!("Approval {id} {problem}.")));
        }
        if let Some(other) = &self.facts.approval_used_by {
            let msg =
                format!("Approval {id} already backs grant {other}; one approval, one grant.");
            return Some(("ApprovalAlreadyUsed", msg));
        }
        if record.approvers.is_empty() {
            return Some((
                "ApproverUnknown",
                format!("Approval {id} names no approver."),
            ));
        }
        let user_arn = match &self.facts.user {
            UserFacts::Exists { arn } => Some(arn.as_str()),
            _ => None,
        };
        for approver in &record.approvers {
            if record
                .requested_by
                .as_deref()
                .is_some_and(|r| same_identity(r, approver))
            {
                let msg = format!("Approval {id} was approved by its own requester {approver}.");
                return Some(("SelfApproval", msg));
            }
            if user_arn.is_some_and(|u| same_identity(u, approver))
                || identity_name(approver) == Some(spec.user.as_str())
            {
                let msg = format!("Approval {id} was approved by the user being granted.");
                return Some(("SelfApproval", msg));
            }
        }
        None
    }

    fn accept_approval(
        &mut self,
        spec: &ProductionAccessGrantSpec,
        terms: &GroupTerms,
        record: Option<&ApprovalRecord>,
        duration: Duration,
    ) -> Timestamp {
        let now = self.facts.now;
        let approval_id = record.map(|r| r.id.clone()).unwrap_or_default();
        self.status.approved_at = Some(Time(now));
        self.status.approved_by = record.map(|r| r.approvers.join(", "));
        self.status.approved = Some(ApprovedTerms {
            user: spec.user.clone(),
            access_group: spec.access_group.clone(),
            approval_id: approval_id.clone(),
            duration_seconds: duration.as_secs() as i64,
        });
        let by = record
            .map(|r| format!(" by {}", r.approvers.join(", ")))
            .unwrap_or_default();
        let msg = match record {
            Some(r) => format!("Approval {} accepted{by}.", r.id),
            None => "The group needs no AWS approval; Git review is the approval.".to_string(),
        };
        self.condition("Approved", Cs::True, "Approved", &msg);
        self.events.push(PlannedEvent {
            warning: false,
            reason: "Approved",
            note: msg,
        });
        if let Some(record) = record {
            // The ledger entry can go once this approval can no longer open any window.
            let until = usable_until(record, terms, now);
            self.actions
                .push(GrantAction::ClaimApproval { approval_id, until });
        }
        now
    }

    /// Computes the window; the clock starts at approval, the earliest start or the scheduled
    /// time, whichever is latest, and the end never passes what the approval covers (see
    /// [`usable_until`]).
    fn window(
        &mut self,
        spec: &ProductionAccessGrantSpec,
        duration: Duration,
        terms: &GroupTerms,
        approved_at: Timestamp,
    ) -> Option<GrantWindow> {
        let approved_secs = self.status.approved.as_ref().map(|a| a.duration_seconds);
        let secs = approved_secs.map_or(duration.as_secs() as i64, |a| {
            a.min(duration.as_secs() as i64)
        });
        if let Some(window) = &self.status.window {
            // A fixed start stays; only a shorter duration may move the expiry earlier.
            let expiry = window
                .expiry
                .0
                .min(later(window.start.0, SignedDuration::from_secs(secs)));
            let window = GrantWindow {
                start: window.start.clone(),
                expiry: Time(expiry),
            };
            self.status.window = Some(window.clone());
            return Some(window);
        }
        let record = match &self.facts.approval {
            ApprovalFacts::Found(record) => Some(record),
            _ => None,
        };
        let mut start = approved_at;
        match spec.not_before.as_deref().map(str::parse::<Timestamp>) {
            None => {}
            Some(Ok(not_before)) => start = start.max(not_before),
            Some(Err(err)) => {
                self.fail("InvalidNotBefore", format!("spec.notBefore: {err}."));
                return None;
            }
        }
        if let Some(scheduled) = record.and_then(|r| r.scheduled_start) {
            start = start.max(scheduled);
        }
        let mut expiry = later(start, SignedDuration::from_secs(secs));
        if let Some(record) = record {
            expiry = expiry.min(usable_until(record, terms, approved_at));
        }
        if expiry <= start {
            let msg = "The approved change window has already ended; nothing to grant.".to_string();
            self.end(GrantPhase::Denied, "WindowClosed", msg);
            return None;
        }
        let window = GrantWindow {
            start: Time(start),
            expiry: Time(expiry),
        };
        self.status.window = Some(window.clone());
        Some(window)
    }

    fn follow_window(
        &mut self,
        spec: &ProductionAccessGrantSpec,
        terms: &GroupTerms,
        window: GrantWindow,
        poll: &PollSettings,
    ) {
        let now = self.facts.now;
        let (start, expiry) = (window.start.0, window.expiry.0);
        if now >= expiry {
            let revoked = self.facts.revoked_earlier.unwrap_or(now);
            let lag = revoked.duration_since(expiry).as_secs_f64();
            if self.was == GrantPhase::Active {
                self.revoke_lag = Some(lag);
            }
            let msg = format!("Access ended at {expiry}.");
            return self.end(GrantPhase::Expired, "Expired", msg);
        }
        if now < start {
            self.status.phase = GrantPhase::Scheduled;
            let msg = format!("Approved; access starts at {start}.");
            self.condition("Granted", Cs::False, "Scheduled", &msg);
            self.condition("Ready", Cs::False, "Scheduled", &msg);
            self.status.message = Some(msg);
            self.requeue = Some(until(now, start).min(poll.resync));
            return;
        }
        let left = until(now, expiry);
        if !self.facts.member && left <= poll.add_margin {
            // An add sent now could reach IAM after the revocation, and the user would be a
            // member without a grant until the revocation is confirmed again.
            // An Active grant whose member was removed by hand is not put back either. Either
            // way the grant ends as usual at expiry.
            self.requeue = Some(left);
            if self.was == GrantPhase::Active {
                return;
            }
            let msg = format!(
                "Not granted: the window ends at {expiry}, too soon to add {} safely (an add \
                 may take up to {} to reach IAM).",
                spec.user,
                crate::crd::format_duration(poll.add_margin)
            );
            self.condition("Granted", Cs::False, "WindowTooShort", &msg);
            self.condition("Ready", Cs::False, "WindowTooShort", &msg);
            self.status.message = Some(msg);
            return;
        }
        if !self.facts.member {
            let send_by = earlier(expiry, poll.add_margin);
            self.actions
                .push(GrantAction::PutExpiryGuard { expiry, send_by });
            self.actions.push(GrantAction::AddToGroup { send_by });
        }
        if self.was != GrantPhase::Active {
            self.status.granted_at = Some(Time(now));
            self.audit = Some(Audit::Granted);
            let note = format!(
                "Granted {} membership of {} until {expiry}.",
                spec.user, terms.group_name
            );
            self.events.push(PlannedEvent {
                warning: false,
                reason: "Granted",
                note,
            });
        } else if !self.facts.member {
            let note = format!(
                "{} was removed from {} by hand; added back.",
                spec.user, terms.group_name
            );
            self.events.push(PlannedEvent {
                warning: true,
                reason: "MembershipRestored",
                note,
            });
        }
        self.status.phase = GrantPhase::Active;
        let msg = format!("{} is in {} until {expiry}.", spec.user, terms.group_name);
        self.condition("Granted", Cs::True, "Active", &msg);
        self.condition("Ready", Cs::True, "Active", &msg);
        self.status.message = Some(msg);
        self.requeue = Some(until(now, expiry).min(poll.resync));
    }

    /// Ends the grant in a final phase, revoking access if it had been given.
    fn end(&mut self, phase: GrantPhase, reason: &'static str, message: String) {
        // A window is recorded just before the guard and the membership are given: once it is
        // there, either may exist even if the grant never showed Active (the operator stopped
        // in between), so the revocation runs (every step of it is idempotent).
        let had_access = self.was == GrantPhase::Active
            || self.status.window.is_some()
            || self.facts.member && self.status.granted_at.is_some();
        if had_access {
            self.revoke();
            self.audit = Some(Audit::Revoked);
        }
        self.status.phase = phase;
        let approved = self.status.approved_at.is_some()
            && phase != GrantPhase::Denied
            && reason != "ApprovalWithdrawn";
        if !approved {
            self.condition("Approved", Cs::False, reason, &message);
        } else if !self.status.conditions.as_slice().is_true("Approved") {
            let msg = "The approval was accepted before the grant ended.";
            self.condition("Approved", Cs::True, "Approved", msg);
        }
        // Otherwise Approved keeps the message of the approval it records; what ended the
        // grant is for Granted and Ready to say.
        self.condition("Granted", Cs::False, reason, &message);
        // A finished grant is healthy and done, so Ready is True for Expired and Revoked.
        let ready = phase != GrantPhase::Denied;
        self.condition("Ready", Cs::from_bool(ready), reason, &message);
        let warning = phase == GrantPhase::Denied;
        self.events.push(PlannedEvent {
            warning,
            reason,
            note: message.clone(),
        });
        self.status.message = Some(message);
        self.requeue = had_access.then_some(CONFIRM_EVERY);
    }

    fn revoke(&mut self) {
        if let Some(at) = self.facts.revoked_earlier {
            // Done in AWS by an earlier reconcile whose status write was lost: record when.
            self.status.revoked_at = Some(Time(at));
            return;
        }
        self.status.revoked_at = Some(Time(self.facts.now));
        if self.facts.other_active_until.is_some() {
            // Another active grant for the same user and group keeps the membership.
            return;
        }
        self.actions.push(GrantAction::RemoveFromGroup);
        self.actions.push(GrantAction::TerminateSessions);
        self.actions.push(GrantAction::RemoveExpiryGuard);
    }

    /// For a while after a revocation, looks again: an AddUserToGroup sent before it (an
    /// attempt the client gave up on, still in flight) can land after it. A member found then
    /// is removed again.
    fn confirm_revocation(&mut self) {
        let Some(left) = confirming_for(&self.status, self.facts.now) else {
            return;
        };
        if self.facts.member && self.facts.other_active_until.is_none() {
            self.actions.push(GrantAction::RemoveFromGroup);
            self.actions.push(GrantAction::TerminateSessions);
            let user = self.status.approved.as_ref().map(|a| a.user.clone());
            self.events.push(PlannedEvent {
                warning: true,
                reason: "StrayMembershipRemoved",
                note: format!(
                    "{} was in the group again after the revocation (a request sent before it \
                     landed late); removed again.",
                    user.unwrap_or_default()
                ),
            });
        }
        self.requeue = Some(CONFIRM_EVERY.min(left));
    }

    fn ineligible(&mut self, reason: &'static str, message: String) {
        if self.was == GrantPhase::Active {
            return self.end(GrantPhase::Revoked, reason, message);
        }
        self.fail(reason, message);
        // The group or account may become ready without any change to this grant (or before
        // the caches show the grant), so look again; an ineligible grant reads nothing in AWS.
        self.requeue = Some(self.poll_resync);
    }

    /// A problem the user can fix by editing the spec or the admin objects.
    fn fail(&mut self, reason: &'static str, message: String) {
        if self.was == GrantPhase::Active {
            return self.end(GrantPhase::Revoked, reason, message);
        }
        self.status.phase = GrantPhase::Failed;
        self.condition("Granted", Cs::False, reason, &message);
        self.condition("Ready", Cs::False, reason, &message);
        if self.status.message.as_deref() != Some(message.as_str()) {
            self.events.push(PlannedEvent {
                warning: true,
                reason,
                note: message.clone(),
            });
        }
        self.status.message = Some(message);
        // Some failures are fixed outside the grant (an IAM user created, an approval ID that
        // now exists), so look again now and then; a spec edit still triggers at once.
        self.requeue = Some(self.poll_resync * 5);
    }

    fn condition(&mut self, type_: &str, status: Cs, reason: &str, message: &str) {
        set_condition(
            &mut self.status.conditions,
            type_,
            status,
            reason,
            message,
            self.facts.generation,
            self.facts.now,
        );
    }
}

/// The default of how long after it was sent a membership or guard request that the client
/// gave up on may still reach IAM. Such requests are sent only while more than this is left of
/// the window, so none can land after the revocation. (IAM answers in well under a second; the
/// emulator's slowest injected answer takes 11 s.)
pub const ADD_MARGIN: Duration = Duration::from_secs(12);

/// How long after a revocation membership is looked at again, and how often. An attempt the
/// SDK gave up on after its 10 s attempt timeout lands at most a little later; these checks
/// find it within 3 s.
pub const CONFIRM_FOR: Duration = Duration::from_secs(12);
pub const CONFIRM_EVERY: Duration = Duration::from_secs(3);

/// While a finished grant's revocation is still being confirmed, how much of that time is
/// left.
pub fn confirming_for(status: &ProductionAccessGrantStatus, now: Timestamp) -> Option<Duration> {
    if !matches!(status.phase, GrantPhase::Expired | GrantPhase::Revoked) {
        return None;
    }
    let revoked = status.revoked_at.as_ref()?.0;
    let end = later(revoked, SignedDuration::try_from(CONFIRM_FOR).ok()?);
    (now < end).then(|| until(now, end))
}

/// Whether the spec sets both approval IDs, so that neither can be taken as the approval.
fn both_approval_ids(spec: &ProductionAccessGrantSpec) -> bool {
    spec.approval
        .as_ref()
        .is_some_and(|a| a.change_request_id.is_some() && a.automation_execution_id.is_some())
}

/// `at - span`, held at the first representable instant.
fn earlier(at: Timestamp, span: Duration) -> Timestamp {
    SignedDuration::try_from(span)
        .ok()
        .and_then(|span| at.checked_sub(span).ok())
        .unwrap_or(Timestamp::MIN)
}

/// `at + span`, held at the last representable instant instead of overflowing: the times come
/// from change requests, which their requester writes, and must never stop the controller.
fn later(at: Timestamp, span: SignedDuration) -> Timestamp {
    at.saturating_add(span).unwrap_or(Timestamp::MAX)
}

/// The last instant an approval may cover: the change request's scheduled end, or else the
/// group's maximum duration after it was approved (or scheduled to start, if later). Windows
/// never pass it, so once it is over the approval cannot grant anything, not even to a grant
/// re-created from the same manifest after the group's ledger has forgotten the approval.
fn usable_until(record: &ApprovalRecord, terms: &GroupTerms, now: Timestamp) -> Timestamp {
    if let Some(end) = record.scheduled_end {
        return end;
    }
    let decided = record.decided_at.unwrap_or(now);
    let anchor = record
        .scheduled_start
        .map_or(decided, |start| start.max(decided));
    later(anchor, signed(terms.max_duration))
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::from_secs(duration.as_secs() as i64)
}

/// Time from `now` to `at`, rounded up to the millisecond so a requeue never fires early.
fn until(now: Timestamp, at: Timestamp) -> Duration {
    let left = at.duration_since(now);
    if left.is_negative() {
        return Duration::ZERO;
    }
    let millis = left.as_millis().max(0) as u64 + 1;
    Duration::from_millis(millis)
}

/// Pending approvals are polled with backoff: the interval doubles with the time already
/// spent waiting, between the configured minimum and maximum.
fn poll_interval(
    now: Timestamp,
    status: &ProductionAccessGrantStatus,
    poll: &PollSettings,
) -> Duration {
    let waiting_since = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Approved" && c.reason == "AwaitingApproval")
        .map(|c| c.last_transition_time.0);
    let waited = waiting_since.map_or(Duration::ZERO, |t| until(t, now));
    let mut interval = poll.min;
    while interval < poll.max && interval * 4 < waited {
        interval *= 2;
    }
    interval.min(poll.max)
}

/// The change request's parameters must name the same user and group.
fn parameter_mismatch(record: &ApprovalRecord, user: &str, group: &str) -> Option<String> {
    let lookup = |keys: &[&str]| -> Option<&Vec<String>> {
        record
            .parameters
            .iter()
            .find(|(k, _)| keys.iter().any(|w| k.eq_ignore_ascii_case(w)))
            .map(|(_, v)| v)
    };
    let users = lookup(&["UserName", "User", "IamUser", "IAMUserName"]);
    let groups = lookup(&[
        "GroupName",
        "Group",
        "AccessGroup",
        "IamGroup",
        "IAMGroupName",
    ]);
    match users {
        None => return Some("does not name the IAM user in its parameters".to_string()),
        Some(values) if !values.iter().any(|v| v == user) => {
            return Some(format!("names user {values:?}, not {user:?}"));
        }
        _ => {}
    }
    match groups {
        None => Some("does not name the IAM group in its parameters".to_string()),
        Some(values) if !values.iter().any(|v| v == group) => {
            Some(format!("names group {values:?}, not {group:?}"))
        }
        _ => None,
    }
}

/// Whether two IAM identities are the same person: equal ARNs, or an assumed-role session and
/// the user it was named after.
fn same_identity(a: &str, b: &str) -> bool {
    a == b || identity_name(a).is_some() && identity_name(a) == identity_name(b)
}

/// The person's name in an identity ARN: the user name, or the assumed role's session name.
fn identity_name(arn: &str) -> Option<&str> {
    let resource = arn.split(':').nth(5)?;
    if let Some(user) = resource.strip_prefix("user/") {
        return user.rsplit('/').next();
    }
    if let Some(session) = resource.strip_prefix("assumed-role/") {
        return session.split('/').nth(1);
    }
    None
}

#[cfg(test)]
mod tests;
