//! What every reconcile gets: the Kubernetes client, the AWS client factory, metrics, the Event
//! recorder, the caches of the admin-owned kinds, and the operator's settings.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

use super::watch::Cached;
use crate::aws::ClientFactory;
use crate::crd::{AccessGroup, AwsAccount, PrivateLinkRoute, ProductionAccessGrant};
use crate::metrics::Metrics;

/// Tunables of one operator instance.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often an active grant's membership and an access group are re-read from AWS.
    pub grant_resync: Duration,
    /// Default period of a route's drift check when its spec does not say.
    pub route_resync: Duration,
    /// How often an `AwsAccount`'s credentials are re-checked.
    pub account_resync: Duration,
    /// Shortest interval between polls of a pending approval; doubles up to `approval_poll_max`.
    pub approval_poll_min: Duration,
    /// Longest interval between polls of a pending approval.
    pub approval_poll_max: Duration,
    /// No membership or guard request is sent in the last this-much of a window (see
    /// `grant::plan::ADD_MARGIN`).
    pub add_margin: Duration,
    /// Name of this controller in Events.
    pub reporter: String,
    /// The namespaces whose grants and routes this instance reconciles; all when empty. The
    /// caches hold every namespace, so each reconcile checks this first.
    pub namespaces: Vec<String>,
}

impl Settings {
    /// Whether a namespaced object in `namespace` is this instance's to reconcile.
    pub fn in_scope(&self, namespace: Option<&str>) -> bool {
        self.namespaces.is_empty()
            || namespace.is_some_and(|ns| self.namespaces.iter().any(|n| n == ns))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grant_resync: Duration::from_secs(60),
            route_resync: Duration::from_secs(300),
            account_resync: Duration::from_secs(600),
            approval_poll_min: Duration::from_secs(2),
            approval_poll_max: Duration::from_secs(30),
            add_margin: crate::controller::grant::plan::ADD_MARGIN,
            reporter: "prodaccess-operator".to_string(),
            namespaces: Vec::new(),
        }
    }
}

/// Shared state of all controllers in one process.
pub struct Context {
    pub client: Client,
    pub aws: Arc<ClientFactory>,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub recorder: Recorder,
    pub accounts: Cached<AwsAccount>,
    pub groups: Cached<AccessGroup>,
    pub grants: Cached<ProductionAccessGrant>,
    pub routes: Cached<PrivateLinkRoute>,
    /// Serialises claims on the approval ledger kept in `AccessGroup` status, so two grants
    /// naming the same approval cannot both win it.
    pub ledger_lock: tokio::sync::Mutex<()>,
    /// Membership and withdrawn approvals, read once per period per group or account.
    pub shared: super::shared::SharedObservations,
    /// What AWS holds for the routes of each account, read once per period per account.
    pub route_snapshots: super::route::Snapshots,
    /// Revocations done in AWS whose status write has not landed yet (the API server was
    /// away), by grant UID: the next reconcile records that time instead of its own.
    pub revocations: std::sync::Mutex<std::collections::HashMap<String, jiff::Timestamp>>,
    /// The resourceVersion of each grant as this operator last read it from the API server or
    /// wrote it, by UID. A cached copy at that version is as new as anything this operator
    /// knows of, so the reconcile can skip reading the grant again.
    pub grant_versions: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Grants the group controller saw short of the membership they give: reconciled at once
    /// instead of at their next resync, so a member removed by hand is back within one read.
    pub grant_nudges: Nudges<ProductionAccessGrant>,
    /// When each `AccessGroup` (by UID) last had a full pass that read AWS, and what it read
    /// it for; between those, a grant's phase change only refreshes the group's member list.
    pub group_passes: std::sync::Mutex<std::collections::HashMap<String, super::group::FullPass>>,
}

/// Requests to reconcile particular objects now, from one controller to another.
pub struct Nudges<K: Resource<DynamicType = ()>> {
    tx: tokio::sync::mpsc::UnboundedSender<ObjectRef<K>>,
    rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<ObjectRef<K>>>>,
}

impl<K: Resource<DynamicType = ()>> Default for Nudges<K> {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Nudges<K> {
    /// Asks for `obj` to be reconciled now. Nobody listening (the controller is not running
    /// yet, or no longer) only means the object waits for its own requeue.
    pub fn send(&self, obj: ObjectRef<K>) {
        let _ = self.tx.send(obj);
    }

    /// The requests, for the one controller that acts on them; `None` once taken.
    pub fn take(&self) -> Option<impl futures::Stream<Item = ObjectRef<K>> + Send + use<K>> {
        let rx = self.rx.lock().ok()?.take()?;
        Some(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|obj| (obj, rx))
        }))
    }
}

impl Context {
    /// Publishes an Event about `obj`. Failing to record an Event must never fail a
    /// reconcile, so errors are only logged.
    pub async fn event<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        let reference = obj.object_ref(&());
        let published = match reference.namespace {
            Some(_) => self.recorder.publish(&event, &reference).await,
            None => self.publish_cluster_scoped(&event, reference).await,
        };
        if let Err(err) = published {
            tracing::warn!(object = %obj.name_any(), error = %err, "Failed to publish event");
        }
    }

    /// Files an Event about a cluster-scoped object in `kube-system`. kube's recorder files
    /// them in `default`, which API servers before 1.20.12, 1.21.6 and 1.22.3 refuse for
    /// events.k8s.io/v1 Events; `kube-system` is accepted by every version.
    async fn publish_cluster_scoped(
        &self,
        event: &Event,
        regarding: ObjectReference,
    ) -> kube::Result<()> {
        let now = jiff::Timestamp::now();
        let object = regarding.name.clone().unwrap_or_default();
        let reporter = self.settings.reporter.clone();
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| reporter.clone());
        let body = KubeEvent {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            regarding: Some(regarding),
            reporting_controller: Some(reporter),
            reporting_instance: Some(instance),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".to_string(),
                EventType::Warning => "Warning".to_string(),
            }),
            ..Default::default()
        };
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), "kube-system");
        api.create(&PostParams::default(), &body).await.map(|_| ())
    }

    /// The Event recorder for a reporter name.
    pub fn recorder(client: Client, reporter: &str) -> Recorder {
        let instance = std::env::var("POD_NAME").ok();
        Recorder::new(
            client,
            Reporter {
                controller: reporter.to_string(),
                instance,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_reconciles_only_the_namespaces_in_its_scope() {
        let all = Settings::default();
        assert!(all.in_scope(Some("team-a")));
        assert!(all.in_scope(None));
        let team_a = Settings {
            namespaces: vec!["team-a".into()],
            ..Settings::default()
        };
        assert!(team_a.in_scope(Some("team-a")));
        assert!(!team_a.in_scope(Some("team-b")));
        assert!(!team_a.in_scope(None));
    }
}
