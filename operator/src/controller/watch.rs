//! One watch and one cache per kind, shared by every controller that needs the kind.
//!
//! The operator's memory is mostly its caches: at 10,000 grants, a second copy of every grant
//! (a controller's own store beside the shared one) and the `managedFields` each copy carries
//! made up most of it. So each kind is watched once, its objects are slimmed before they are
//! cached, and controllers are triggered from that one cache through [`Cached::subscribe`].

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

/// Written by `kubectl apply` (and Argo CD's default sync): a second copy of the whole object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the operator never reads and that costs the most memory per cached object: the
/// field managers (about 70% of a grant as held in memory) and `kubectl apply`'s copy.
pub fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// The cache of one kind, and the feed of its changes to the controllers that subscribed.
pub struct Cached<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>>,
}

impl<K: Resource<DynamicType = ()> + 'static> Deref for Cached<K> {
    type Target = Store<K>;

    fn deref(&self) -> &Store<K> {
        &self.store
    }
}

impl<K> Cached<K>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    K: Send + Sync + 'static,
{
    /// Starts the watch for `api` (scoped by `config`) and returns its cache, which fills in
    /// the background; see [`Store::wait_until_ready`].
    pub fn watch(api: Api<K>, config: &watcher::Config) -> Self {
        let (reader, writer) = reflector::store();
        let subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>> = Arc::default();
        let (store, feed) = (reader.clone(), subscribers.clone());
        let stream = reflector::reflector(writer, watcher(api, config.clone()).modify(slim))
            .default_backoff();
        tokio::spawn(async move {
            stream
                .for_each(|event| {
                    // Handed out once the cache holds them, as the cache's own `Arc`s: a
                    // controller finds the object it was triggered for, and no copy is made.
                    match event {
                        Ok(watcher::Event::Apply(obj)) => {
                            if let Some(cached) = store.get(&ObjectRef::from_obj(&obj)) {
                                send(&feed, &cached);
                            }
                        }
                        // Gone from the cache already; handed out so that what follows it
                        // (grants following their group) learns of the deletion. A controller
                        // of this kind finds nothing to reconcile and drops it.
                        Ok(watcher::Event::Delete(obj)) => send(&feed, &Arc::new(obj)),
                        // A (re)list replaces the cache only when complete; then every object
                        // may have changed while the watch was away, so all are handed out.
                        Ok(watcher::Event::InitDone) => {
                            for cached in store.state() {
                                send(&feed, &cached);
                            }
                        }
                        _ => {}
                    }
                    futures::future::ready(())
                })
                .await;
        });
        Cached {
            store: reader,
            subscribers,
        }
    }

    /// Every object in the cache now, then every change and deletion after: the trigger of a
    /// controller that reconciles this kind from this cache. Never blocks the watch: a
    /// controller that falls behind queues references to cached objects, not copies.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded();
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push(tx.clone());
        }
        // After joining the feed, so an object changed in between comes twice at worst (the
        // controller merges them), never not at all.
        for obj in self.store.state() {
            let _ = tx.unbounded_send(obj);
        }
        rx
    }
}

impl<K> Cached<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// [`Cached::subscribe`] as owned objects, the form `watches_stream` and `predicate_filter`
    /// take: the trigger of a controller that reconciles another kind when one of these
    /// changes. Each change arrives once this cache holds it, so a reconcile it starts finds
    /// the change in the cache; a separate watch could deliver it before the cache has it, and
    /// the reconcile would act on the old object until its next resync. Copies each object, so
    /// it is for the small admin-owned kinds.
    pub fn subscribe_owned(&self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        K: Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    {
        self.subscribe().map(|obj| Ok(obj.as_ref().clone()))
    }
}

/// Sends `obj` to every subscriber, and forgets those that went away.
fn send<K>(subscribers: &Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>, obj: &Arc<K>) {
    if let Ok(mut subscribers) = subscribers.lock() {
        subscribers.retain(|tx| tx.unbounded_send(obj.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ProductionAccessGrant, ProductionAccessGrantSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use std::collections::BTreeMap;

    #[test]
    fn slim_drops_field_managers_and_the_applied_copy_only() -> Result<(), serde_json::Error> {
        let spec: ProductionAccessGrantSpec = serde_json::from_value(serde_json::json!({
            "accessGroup": "prod", "user": "alice", "reason": "check"
        }))?;
        let mut grant = ProductionAccessGrant::new("g", spec);
        grant.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        grant.metadata.annotations = Some(BTreeMap::from([
            (LAST_APPLIED.to_string(), "{...}".to_string()),
            ("prodaccess.io/paused".to_string(), "true".to_string()),
        ]));
        slim(&mut grant);
        assert_eq!(grant.metadata.managed_fields, None);
        let annotations = grant.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["prodaccess.io/paused"]
        );
        assert_eq!(grant.spec.user, "alice");
        Ok(())
    }

    #[test]
    fn subscribers_that_went_away_are_forgotten() {
        let subscribers = Mutex::new(Vec::new());
        let (kept, mut kept_rx) = mpsc::unbounded();
        let (gone, gone_rx) = mpsc::unbounded();
        drop(gone_rx);
        if let Ok(mut list) = subscribers.lock() {
            list.extend([kept, gone]);
        }
        send(&subscribers, &Arc::new(1_u8));
        assert_eq!(subscribers.lock().map(|l| l.len()).ok(), Some(1));
        assert_eq!(kept_rx.try_recv().ok().as_deref(), Some(&1));
    }
}
