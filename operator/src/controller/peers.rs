//! Objects that claim one thing in AWS (an IAM group, a host name in a VPC): only the oldest
//! acts, or two would undo each other's work at every resync.

use kube::{Resource, ResourceExt};
use std::sync::Arc;

use crate::crd::AwsAccount;

/// The oldest of `peers` that makes the same claim as `obj` (`same`) and is older than it, by
/// creation time, then namespace and name (so never `obj` itself). Objects being deleted claim
/// nothing.
pub fn older_claimant<'a, K: Resource>(
    obj: &K,
    peers: &'a [Arc<K>],
    same: impl Fn(&K) -> bool,
) -> Option<&'a Arc<K>> {
    let seniority = |k: &K| {
        let created = k.meta().creation_timestamp.clone();
        (created, k.namespace().unwrap_or_default(), k.name_any())
    };
    peers
        .iter()
        .filter(|peer| peer.meta().deletion_timestamp.is_none())
        .filter(|peer| same(peer))
        .filter(|peer| seniority(peer) < seniority(obj))
        .min_by_key(|peer| seniority(peer))
}

/// The AWS account an `AwsAccount` name stands for: its account ID once verified, else the
/// name, so two `AwsAccount`s for one account compare equal once both are verified.
pub fn account_key(name: &str, accounts: &[Arc<AwsAccount>]) -> String {
    accounts
        .iter()
        .find(|a| a.name_any() == name)
        .and_then(|a| a.status.as_ref()?.account_id.clone())
        .unwrap_or_else(|| name.to_string())
}
