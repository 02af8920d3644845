//! In-use protection of the admin-owned kinds. An `AccessGroup` goes only once no grant holds
//! access through it, and an `AwsAccount` only once no group or route names it: they are what
//! a revocation or a route's teardown needs to reach AWS. Without this, deleting a group while a
//! grant was active left the user in the IAM group, and deleting an account left routes unable
//! to release their finalizers.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::crd::{GrantPhase, ProductionAccessGrant};

/// Held by every `AccessGroup` and `AwsAccount` the operator manages.
pub const IN_USE_FINALIZER: &str = "prodaccess.io/in-use";

/// Adds (`present`) or removes the finalizer. The object's resourceVersion is a precondition,
/// so a change another client makes to the list at the same time is never overwritten.
pub async fn set_finalizer<K>(api: &Api<K>, obj: &K, present: bool) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut finalizers = obj.finalizers().to_vec();
    if finalizers.iter().any(|f| f == IN_USE_FINALIZER) == present {
        return Ok(());
    }
    if present {
        finalizers.push(IN_USE_FINALIZER.to_string());
    } else {
        finalizers.retain(|f| f != IN_USE_FINALIZER);
    }
    let patch = json!({
        "metadata": { "finalizers": finalizers, "resourceVersion": obj.resource_version() }
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Whether the object still carries the finalizer (a deleted object without it is not ours
/// to hold).
pub fn held<K: Resource>(obj: &K) -> bool {
    obj.meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == IN_USE_FINALIZER))
}

/// Whether a grant may hold access now: it has a window (access is given just after the window
/// is recorded) and has not ended.
pub fn holds_access(grant: &ProductionAccessGrant) -> bool {
    grant.status.as_ref().is_some_and(|s| {
        !s.phase.is_terminal() && (s.phase == GrantPhase::Active || s.window.is_some())
    })
}
