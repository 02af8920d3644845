//! End-to-end tests of `ProductionAccessGrant` on the platform: the operator binary against a
//! real kube-apiserver and the AWS emulator with IAM enforcement on.

use kube::api::{Api, DeleteParams};
use prodaccess::crd::ProductionAccessGrant;
use prodaccess_e2e::platform::eventually;
use prodaccess_e2e::scenario::{grant_lifecycle, GRANT};
use prodaccess_e2e::seed::{self, Fixtures};
use prodaccess_e2e::{Operator, TestEnv};
use std::time::Duration;

/// The article's check, end to end: alice cannot start the port-forwarding session before
/// approval; the operator opens a change request; once the approver approves, alice is in the
/// group and the same session starts; at expiry she is out, her session is terminated, and
/// the session is denied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_grant_lifecycle() -> anyhow::Result<()> {
    let env = TestEnv::new("seed-grant").await?;
    seed::enable_enforcement(&env.platform.aws_endpoint).await?;
    let fx = Fixtures::create(&env.platform.aws_endpoint).await?;
    let mut operator = Operator::start(&env, "operator", &[])?;
    operator.wait_ready().await?;

    let outcome = grant_lifecycle(&env, &fx, "20s", &|_| {}).await?;
    assert!(outcome.revoke_lag < 2.0);

    let api: Api<ProductionAccessGrant> = env.api();
    api.delete(GRANT, &DeleteParams::default()).await?;
    eventually("grant deleted", Duration::from_secs(20), || async {
        Ok(api.get_opt(GRANT).await?.is_none().then_some(()))
    })
    .await?;
    env.cleanup().await;
    Ok(())
}
