//! `kubectl prodaccess request`: the grant a person asks for, and the wait for it.
//!
//! [`grant_for`] turns the flags into a `ProductionAccessGrant` with a generated name (pure);
//! [`Progress`] decides which phase changes to print while waiting. The wait polls the grant
//! with `get` only, so that a user with the narrowest RBAC (create and get grants) can use it.

use kube::api::ObjectMeta;
use std::collections::BTreeMap;

use crate::crd::{
    parse_duration, ApprovalRef, GrantPhase, ProductionAccessGrant, ProductionAccessGrantSpec,
};

use super::error::PluginError;

/// What the user asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub group: String,
    pub user: String,
    pub duration: Option<String>,
    pub reason: String,
    pub change_request: Option<String>,
    pub automation_execution: Option<String>,
    pub labels: Vec<String>,
}

/// The grant to create. Checks what a person gets wrong at 3 a.m. before the API server does,
/// with the same rules the operator applies.
pub fn grant_for(request: &Request) -> Result<ProductionAccessGrant, PluginError> {
    if let Some(duration) = &request.duration {
        parse_duration(duration).map_err(|err| PluginError::Usage(err.to_string()))?;
    }
    if request.reason.trim().is_empty() {
        return Err(PluginError::Usage(
            "--reason is empty; say why you need access (it goes into the change request)".into(),
        ));
    }
    if request.change_request.is_some() && request.automation_execution.is_some() {
        return Err(PluginError::Usage(
            "give --change-request or --automation-execution, not both".into(),
        ));
    }
    let approval = (request.change_request.is_some() || request.automation_execution.is_some())
        .then(|| ApprovalRef {
            change_request_id: request.change_request.clone(),
            automation_execution_id: request.automation_execution.clone(),
        });
    let spec = ProductionAccessGrantSpec {
        access_group: request.group.clone(),
        user: request.user.clone(),
        duration: request.duration.clone(),
        not_before: None,
        reason: request.reason.clone(),
        approval,
        revoked: false,
    };
    let mut grant = ProductionAccessGrant::new("", spec);
    grant.metadata = ObjectMeta {
        generate_name: Some(name_prefix(&request.user, &request.group)),
        labels: Some(labels(&request.labels)?),
        ..Default::default()
    };
    Ok(grant)
}

/// `user-group-`, reduced to what a Kubernetes name allows; the API server appends 5
/// random characters.
pub fn name_prefix(user: &str, group: &str) -> String {
    let raw = format!("{user}-{group}").to_ascii_lowercase();
    let mut name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    let mut name = name.trim_matches('-').to_string();
    // Names are at most 253 characters, but labels that carry them are 63: stay under that.
    name.truncate(52);
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "grant-".to_string()
    } else {
        format!("{name}-")
    }
}

fn labels(pairs: &[String]) -> Result<BTreeMap<String, String>, PluginError> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(PluginError::Usage(format!(
                "--label {pair:?} is not of the form KEY=VALUE"
            ))),
        })
        .collect()
}

/// What the waiting loop should do after one look at the grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep waiting; print the line, if any.
    Wait(Option<String>),
    /// Access started.
    Active,
    /// The grant ended without access (or access already ended).
    Ended(PluginError),
}

/// Remembers what was printed, so that each change is printed once.
#[derive(Default)]
pub struct Progress {
    last: Option<(GrantPhase, Option<String>, Option<String>)>,
}

impl Progress {
    /// Looks at the grant once.
    pub fn observe(&mut self, grant: &ProductionAccessGrant) -> Step {
        let status = grant.status.clone().unwrap_or_default();
        let name = grant.metadata.name.clone().unwrap_or_default();
        let seen = (
            status.phase,
            status.message.clone(),
            status.approval_id.clone(),
        );
        let changed = self.last.as_ref() != Some(&seen);
        self.last = Some(seen);
        match status.phase {
            GrantPhase::Active => Step::Active,
            // Failed waits for an edit by a person; waiting here would only hide why.
            GrantPhase::Failed => Step::Ended(PluginError::Failed {
                name,
                message: status.message.unwrap_or_default(),
            }),
            phase if phase.is_terminal() => Step::Ended(PluginError::Ended {
                name,
                phase: phase.as_str(),
                message: status.message.unwrap_or_default(),
            }),
            phase => Step::Wait(changed.then(|| progress_line(phase, &status))),
        }
    }
}

fn progress_line(phase: GrantPhase, status: &crate::crd::ProductionAccessGrantStatus) -> String {
    let message = status.message.clone().unwrap_or_default();
    let line = match (phase, &status.approval_id) {
        // The operator's message usually names the change request too; say it once.
        (GrantPhase::AwaitingApproval, Some(id)) if message.contains(id.as_str()) => {
            format!("waiting for approval of change request {id}")
        }
        (GrantPhase::AwaitingApproval, Some(id)) => {
            format!("waiting for approval of change request {id} ({message})")
        }
        _ => message,
    };
    format!("{:<17}{line}", phase.as_str())
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ProductionAccessGrantStatus;

    fn request() -> Request {
        Request {
            group: "production-access".into(),
            user: "alice".into(),
            duration: Some("1h".into()),
            reason: "release check".into(),
            ..Default::default()
        }
    }

    #[test]
    fn builds_a_generated_name_grant_with_labels_and_approval() {
        let mut req = request();
        req.change_request = Some("0b7a3c9e-1111-2222-3333-444455556666".into());
        req.labels = vec!["team=payments".into()];
        let grant = grant_for(&req).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            grant.metadata.generate_name.as_deref(),
            Some("alice-production-access-")
        );
        assert_eq!(grant.metadata.name, None);
        assert_eq!(grant.spec.user, "alice");
        assert_eq!(grant.spec.duration.as_deref(), Some("1h"));
        let approval = grant.spec.approval.clone().unwrap_or_default();
        assert_eq!(approval.id(), Some("0b7a3c9e-1111-2222-3333-444455556666"));
        let labels = grant.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("team").map(String::as_str), Some("payments"));
        assert_eq!(grant_for(&request()).map(|g| g.spec.approval), Ok(None));
    }

    #[test]
    fn refuses_bad_duration_empty_reason_two_approvals_and_bad_labels() {
        let cases: [fn(&mut Request); 5] = [
            |r| r.duration = Some("1 hour".into()),
            |r| r.duration = Some("0m".into()),
            |r| r.reason = "  ".into(),
            |r| {
                r.change_request = Some("a".into());
                r.automation_execution = Some("b".into());
            },
            |r| r.labels = vec!["novalue".into()],
        ];
        for change in cases {
            let mut req = request();
            change(&mut req);
            assert!(
                matches!(grant_for(&req), Err(PluginError::Usage(_))),
                "{req:?}"
            );
        }
    }

    #[test]
    fn name_prefix_is_a_valid_kubernetes_name() {
        assert_eq!(name_prefix("alice", "Prod_Access"), "alice-prod-access-");
        assert_eq!(name_prefix("a.b@c", "g"), "a-b-c-g-");
        assert_eq!(name_prefix("@@", "--"), "grant-");
        let long = name_prefix(&"x".repeat(100), "g");
        assert!(long.len() <= 53 && long.ends_with('-'), "{long}");
    }

    fn at(phase: GrantPhase, message: &str, approval: Option<&str>) -> ProductionAccessGrant {
        let mut grant = ProductionAccessGrant::new(
            "g1",
            ProductionAccessGrantSpec {
                access_group: "production-access".into(),
                user: "alice".into(),
                duration: None,
                not_before: None,
                reason: "r".into(),
                approval: None,
                revoked: false,
            },
        );
        grant.status = Some(ProductionAccessGrantStatus {
            phase,
            message: Some(message.into()),
            approval_id: approval.map(str::to_string),
            ..Default::default()
        });
        grant
    }

    #[test]
    fn prints_each_change_once_and_stops_at_active_or_a_final_phase() {
        let mut progress = Progress::default();
        let pending = at(GrantPhase::Pending, "", None);
        assert_eq!(
            progress.observe(&pending),
            Step::Wait(Some("Pending".into()))
        );
        assert_eq!(progress.observe(&pending), Step::Wait(None));
        let waiting = at(GrantPhase::AwaitingApproval, "opened", Some("cr-1"));
        assert_eq!(
            progress.observe(&waiting),
            Step::Wait(Some(
                "AwaitingApproval waiting for approval of change request cr-1 (opened)".into()
            ))
        );
        assert_eq!(progress.observe(&waiting), Step::Wait(None));
        let named = at(
            GrantPhase::AwaitingApproval,
            "Waiting for cr-1.",
            Some("cr-1"),
        );
        assert_eq!(
            progress.observe(&named),
            Step::Wait(Some(
                "AwaitingApproval waiting for approval of change request cr-1".into()
            ))
        );
        assert_eq!(
            progress.observe(&at(GrantPhase::Active, "in", None)),
            Step::Active
        );
        let denied = progress.observe(&at(GrantPhase::Denied, "rejected by carol", None));
        assert_eq!(
            denied,
            Step::Ended(PluginError::Ended {
                name: "g1".into(),
                phase: "Denied",
                message: "rejected by carol".into()
            })
        );
    }

    #[test]
    fn a_failed_grant_ends_the_wait_with_its_reason() {
        let mut progress = Progress::default();
        let failed = at(
            GrantPhase::Failed,
            "Namespace \"default\" may not use it.",
            None,
        );
        assert_eq!(
            progress.observe(&failed),
            Step::Ended(PluginError::Failed {
                name: "g1".into(),
                message: "Namespace \"default\" may not use it.".into()
            })
        );
    }
}
