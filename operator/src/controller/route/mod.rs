//! PrivateLinkRoute controller (being written).
use crate::controller::Context;
use crate::crd::PrivateLinkRoute;
use std::sync::Arc;

pub async fn run(
    _ctx: Arc<Context>,
    _api: kube::Api<PrivateLinkRoute>,
    _config: kube::runtime::watcher::Config,
) {
    std::future::pending::<()>().await
}
