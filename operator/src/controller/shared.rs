//! Observations shared across reconciles, so that AWS is read once per period per group or
//! account instead of once per object.
//!
//! - Group membership: one `GetGroup` per IAM group per period answers the group's own
//!   reconcile and every grant of that group. The group controller reads it fresh at each of
//!   its resyncs; grants take that read while it is less than one and a half periods old, so
//!   they read only when the group's reconcile is late. A read that misses a live grant's
//!   member reconciles that grant at once (`Context::grant_nudges`), so a member removed by
//!   hand is restored within one period, not up to two and a half. The operator's own
//!   membership changes update it in place, so a grant never waits for the next read to see
//!   its effect. Only reads made under the entry's lock fill it: a read made elsewhere could
//!   predate a change recorded meanwhile and undo it.
//! - Withdrawn approvals: one `DescribeAutomationExecutions` per account per period, filtered to
//!   the statuses that withdraw an approval, tells every active grant whether its approval
//!   still stands. Nothing is withdrawn in the usual case, so the answer is empty and cheap.
//!
//! Each entry is refreshed by a single caller at a time (a per-key async lock), so a burst of
//! reconciles for one group makes one read, not one per grant.

use aws_sdk_ssm::types::{AutomationExecutionFilter, AutomationExecutionFilterKey};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use crate::aws::{classify, error_message, AwsClients, ErrorClass};

/// An AWS read that failed while refreshing a shared observation.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action}: {message}")]
pub struct ReadError {
    pub action: String,
    pub message: String,
    pub class: ErrorClass,
}

struct Entry<T> {
    value: Option<(Instant, T)>,
}

type Slot<T> = Arc<Mutex<Entry<T>>>;

/// Per-key cached values with single-flight refresh.
struct Cache<T> {
    slots: std::sync::Mutex<HashMap<String, Slot<T>>>,
}

impl<T: Clone> Cache<T> {
    fn new() -> Self {
        Self {
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &str) -> Slot<T> {
        match self.slots.lock() {
            Ok(mut slots) => slots
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(Entry { value: None })))
                .clone(),
            // A poisoned map only means another thread panicked mid-insert; a fresh slot is
            // always a correct (if uncached) answer.
            Err(_) => Arc::new(Mutex::new(Entry { value: None })),
        }
    }

    async fn get_or_refresh<F, Fut>(
        &self,
        key: &str,
        max_age: Duration,
        read: F,
    ) -> Result<T, ReadError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, ReadError>>,
    {
        let slot = self.slot(key);
        let mut entry = slot.lock().await;
        if let Some((at, value)) = &entry.value {
            if at.elapsed() < max_age {
                return Ok(value.clone());
            }
        }
        let value = read().await?;
        entry.value = Some((Instant::now(), value.clone()));
        Ok(value)
    }

    /// The cached value, however old, without reading.
    async fn peek(&self, key: &str) -> Option<T> {
        let slot = self.slot(key);
        let entry = slot.lock().await;
        entry.value.as_ref().map(|(_, value)| value.clone())
    }

    async fn update(&self, key: &str, change: impl FnOnce(&mut T)) {
        let slot = self.slot(key);
        let mut entry = slot.lock().await;
        if let Some((_, value)) = entry.value.as_mut() {
            change(value);
        }
    }
}

/// What `GetGroup` says of an IAM group that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRead {
    pub arn: String,
    pub members: BTreeSet<String>,
}

/// The shared observations of one operator.
pub struct SharedObservations {
    /// `None`: the group does not exist.
    groups: Cache<Option<GroupRead>>,
    withdrawn: Cache<BTreeSet<String>>,
    /// When the operator itself last added each `account/group/user`.
    added: std::sync::Mutex<HashMap<String, Instant>>,
}

impl Default for SharedObservations {
    fn default() -> Self {
        Self {
            groups: Cache::new(),
            withdrawn: Cache::new(),
            added: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

/// How long a member the operator added counts as granted even before the grant's status
/// says so: the status is written right after the add, so this only has to cover that gap.
const JUST_ADDED: Duration = Duration::from_secs(30);

fn group_key(account: &str, group: &str) -> String {
    format!("{account}/{group}")
}

impl SharedObservations {
    /// Members of `group` in `account` (an `AwsAccount` name), at most `max_age` old. A group
    /// that does not exist is a `NotFound` error.
    pub async fn members(
        &self,
        clients: &AwsClients,
        account: &str,
        group: &str,
        max_age: Duration,
    ) -> Result<BTreeSet<String>, ReadError> {
        let key = group_key(account, group);
        let read = self
            .groups
            .get_or_refresh(&key, max_age, || read_group(clients, group))
            .await?;
        read.map(|g| g.members).ok_or_else(|| ReadError {
            action: format!("get IAM group {group}"),
            message: "the group does not exist".to_string(),
            class: ErrorClass::NotFound,
        })
    }

    /// The group as IAM has it now (`None` if it does not exist), read fresh; the read also
    /// serves the group's grants until the next one.
    pub async fn group(
        &self,
        clients: &AwsClients,
        account: &str,
        group: &str,
    ) -> Result<Option<GroupRead>, ReadError> {
        let key = group_key(account, group);
        self.groups
            .get_or_refresh(&key, Duration::ZERO, || read_group(clients, group))
            .await
    }

    /// The members of `group` as last read, with the operator's own changes since; reads
    /// nothing. `None` before the first read or if the group did not exist.
    pub async fn cached_members(&self, account: &str, group: &str) -> Option<BTreeSet<String>> {
        let read = self.groups.peek(&group_key(account, group)).await?;
        read.map(|g| g.members)
    }

    /// Records a membership change the operator itself made.
    pub async fn set_member(&self, account: &str, group: &str, user: &str, member: bool) {
        if let Ok(mut added) = self.added.lock() {
            let key = format!("{}/{user}", group_key(account, group));
            added.retain(|_, at| at.elapsed() < JUST_ADDED);
            if member {
                added.insert(key, Instant::now());
            } else {
                added.remove(&key);
            }
        }
        let user = user.to_string();
        self.groups
            .update(&group_key(account, group), move |read| {
                let Some(read) = read else { return };
                if member {
                    read.members.insert(user);
                } else {
                    read.members.remove(&user);
                }
            })
            .await;
    }

    /// Whether the operator added `user` to the group moments ago, so that an exclusive group
    /// does not remove a member whose grant has not yet written its Active status.
    pub fn just_added(&self, account: &str, group: &str, user: &str) -> bool {
        let key = format!("{}/{user}", group_key(account, group));
        self.added
            .lock()
            .ok()
            .and_then(|added| added.get(&key).map(|at| at.elapsed() < JUST_ADDED))
            .unwrap_or(false)
    }

    /// IDs of approvals in `account` that were rejected, cancelled, failed or timed out, at
    /// most `max_age` old.
    pub async fn withdrawn_approvals(
        &self,
        clients: &AwsClients,
        account: &str,
        max_age: Duration,
    ) -> Result<BTreeSet<String>, ReadError> {
        self.withdrawn
            .get_or_refresh(account, max_age, || read_withdrawn(clients))
            .await
    }
}

async fn read_group(clients: &AwsClients, group: &str) -> Result<Option<GroupRead>, ReadError> {
    let mut members = BTreeSet::new();
    let mut marker = None;
    loop {
        let sent = clients
            .iam
            .get_group()
            .group_name(group)
            .set_marker(marker)
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(err) if classify(&err) == ErrorClass::NotFound => return Ok(None),
            Err(err) => {
                return Err(ReadError {
                    action: format!("get IAM group {group}"),
                    class: classify(&err),
                    message: error_message(&err),
                })
            }
        };
        members.extend(out.users().iter().map(|u| u.user_name().to_string()));
        match out.marker() {
            Some(next) if out.is_truncated() => marker = Some(next.to_string()),
            _ => {
                let arn = out.group().map(|g| g.arn().to_string()).unwrap_or_default();
                return Ok(Some(GroupRead { arn, members }));
            }
        }
    }
}

/// Statuses after which an approval no longer stands.
const WITHDRAWN: &[&str] = &[
    "Rejected",
    "Cancelled",
    "Cancelling",
    "Failed",
    "TimedOut",
    "CompletedWithFailure",
];

async fn read_withdrawn(clients: &AwsClients) -> Result<BTreeSet<String>, ReadError> {
    let filter = AutomationExecutionFilter::builder()
        .key(AutomationExecutionFilterKey::ExecutionStatus)
        .set_values(Some(WITHDRAWN.iter().map(|s| s.to_string()).collect()))
        .build()
        .map_err(|err| ReadError {
            action: "build the approval filter".to_string(),
            class: ErrorClass::InvalidRequest,
            message: err.to_string(),
        })?;
    let mut withdrawn = BTreeSet::new();
    let mut token = None;
    loop {
        let out = clients
            .ssm
            .describe_automation_executions()
            .filters(filter.clone())
            .set_next_token(token)
            .max_results(50)
            .send()
            .await
            .map_err(|err| ReadError {
                action: "list withdrawn approvals".to_string(),
                class: classify(&err),
                message: error_message(&err),
            })?;
        let ids = out.automation_execution_metadata_list().iter();
        withdrawn.extend(ids.filter_map(|m| m.automation_execution_id().map(str::to_string)));
        match out.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => return Ok(withdrawn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_readers_of_one_key_make_one_read() {
        let cache: Arc<Cache<u32>> = Arc::new(Cache::new());
        let reads = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (cache, reads) = (cache.clone(), reads.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_refresh("g", Duration::from_secs(60), || async {
                            reads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok(7)
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.ok().and_then(Result::ok), Some(7));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stale_entries_are_read_again_and_updates_apply_in_place() {
        let cache: Cache<BTreeSet<String>> = Cache::new();
        let read = || async { Ok(BTreeSet::from(["alice".to_string()])) };
        let first = cache
            .get_or_refresh("g", Duration::from_secs(60), read)
            .await;
        assert!(first.is_ok_and(|m| m.contains("alice")));
        cache
            .update("g", |m| {
                m.remove("alice");
            })
            .await;
        let cached = cache
            .get_or_refresh("g", Duration::from_secs(60), read)
            .await;
        assert!(
            cached.is_ok_and(|m| m.is_empty()),
            "the update is seen without a read"
        );
        let fresh = cache.get_or_refresh("g", Duration::ZERO, read).await;
        assert!(
            fresh.is_ok_and(|m| m.contains("alice")),
            "a stale entry is read again"
        );
    }
}
