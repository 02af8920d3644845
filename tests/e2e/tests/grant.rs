//! End-to-end tests of `ProductionAccessGrant` on the platform: the operator binary against a
//! real kube-apiserver and the AWS emulator with IAM enforcement on.

use jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use prodaccess::crd::{GrantPhase, ProductionAccessGrant};
use prodaccess_e2e::platform::eventually;
use prodaccess_e2e::seed::{self, Fixtures};
use prodaccess_e2e::{Operator, TestEnv};
use std::time::Duration;

const GROUP: &str = "ProductionAccess";

async fn grant_where(
    api: &Api<ProductionAccessGrant>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&ProductionAccessGrant) -> bool,
) -> anyhow::Result<ProductionAccessGrant> {
    eventually(what, timeout, || async {
        let grant = api.get(name).await?;
        Ok(check(&grant).then_some(grant))
    })
    .await
}

fn phase(grant: &ProductionAccessGrant) -> GrantPhase {
    grant.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// The article's check, end to end: alice cannot start the port-forwarding session before
/// approval; the operator opens a change request; once the approver approves, alice is in the
/// group and the same session starts; at expiry she is out, her session is terminated, and
/// the session is denied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_grant_lifecycle() -> anyhow::Result<()> {
    let env = TestEnv::new("seed-grant").await?;
    let endpoint = env.platform.aws_endpoint.clone();
    seed::enable_enforcement(&endpoint).await?;
    let fx = Fixtures::create(&endpoint).await?;
    let mut operator = Operator::start(&env, "operator", &[])?;
    operator.wait_ready().await?;

    let vars = fx.variables(&env.namespace, &format!("-{}", env.id), "20s");
    let admin = seed::manifests(&env.platform.repo, &vars, &["01", "02"])?;
    env.apply_yaml(&admin).await?;
    let denied = fx.start_port_forwarding(&fx.alice).await?;
    let denial = denied.expect_err("alice must be denied before approval");
    assert!(denial.starts_with("AccessDeniedException"), "{denial}");

    env.apply_yaml(&seed::manifests(&env.platform.repo, &vars, &["03"])?)
        .await?;
    let api: Api<ProductionAccessGrant> = env.api();
    let name = "alice-admin-console";
    let waiting = grant_where(
        &api,
        name,
        "a change request",
        Duration::from_secs(60),
        |g| {
            phase(g) == GrantPhase::AwaitingApproval
                && g.status
                    .as_ref()
                    .and_then(|s| s.approval_id.as_ref())
                    .is_some()
        },
    )
    .await?;
    let change_request = waiting
        .status
        .and_then(|s| s.approval_id)
        .unwrap_or_default();
    assert!(
        fx.group_members(GROUP).await?.is_empty(),
        "nobody is in before approval"
    );
    assert!(fx.start_port_forwarding(&fx.alice).await?.is_err());

    fx.approve(&fx.carol, &change_request).await?;
    let active = grant_where(&api, name, "Active", Duration::from_secs(30), |g| {
        phase(g) == GrantPhase::Active
    })
    .await?;
    let status = active.status.clone().unwrap_or_default();
    assert_eq!(status.approved_by.as_deref(), Some(fx.carol.arn.as_str()));
    assert_eq!(fx.group_members(GROUP).await?, vec!["alice".to_string()]);
    let session = fx.start_port_forwarding(&fx.alice).await?;
    let session = session.map_err(|e| anyhow::anyhow!("alice must get a session now: {e}"))?;
    assert!(session.starts_with("alice-"), "{session}");

    let expiry = status
        .window
        .as_ref()
        .map(|w| w.expiry.0)
        .unwrap_or(Timestamp::now());
    let expired = grant_where(&api, name, "Expired", Duration::from_secs(40), |g| {
        phase(g) == GrantPhase::Expired
    })
    .await?;
    let revoked_at = expired
        .status
        .and_then(|s| s.revoked_at)
        .map(|t| t.0)
        .unwrap_or(expiry);
    let lag = revoked_at.duration_since(expiry).as_secs_f64();
    assert!((0.0..2.0).contains(&lag), "revoked {lag}s after expiry");
    assert!(
        fx.group_members(GROUP).await?.is_empty(),
        "alice is out after expiry"
    );
    assert_eq!(
        fx.session_status(&session).await?.as_deref(),
        Some("Terminated")
    );
    let again = fx.start_port_forwarding(&fx.alice).await?;
    let again = again.expect_err("alice must be denied after expiry");
    assert!(again.starts_with("AccessDeniedException"), "{again}");

    api.delete(name, &DeleteParams::default()).await?;
    eventually("grant deleted", Duration::from_secs(20), || async {
        Ok(api.get_opt(name).await?.is_none().then_some(()))
    })
    .await?;
    env.cleanup().await;
    Ok(())
}
