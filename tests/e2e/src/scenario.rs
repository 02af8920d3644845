//! The seed grant scenario as one function, run by the `seed_grant_lifecycle` test and by
//! `make demo`: every expectation is checked, and each step is reported through `say` so the
//! demo can print what a user would see.

use anyhow::{ensure, Context as _};
use jiff::Timestamp;
use kube::api::Api;
use prodaccess::crd::{GrantPhase, ProductionAccessGrant};
use std::time::Duration;

use crate::platform::eventually;
use crate::seed::{self, Fixtures};
use crate::TestEnv;

/// IAM group name of the seed access group.
pub const GROUP: &str = "ProductionAccess";
/// Name of the seed grant.
pub const GRANT: &str = "alice-admin-console";

fn phase(grant: &ProductionAccessGrant) -> GrantPhase {
    grant.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

async fn grant_where(
    api: &Api<ProductionAccessGrant>,
    what: &str,
    timeout: Duration,
    check: impl Fn(&ProductionAccessGrant) -> bool,
) -> crate::Result<ProductionAccessGrant> {
    eventually(what, timeout, || async {
        let grant = api.get(GRANT).await?;
        Ok(check(&grant).then_some(grant))
    })
    .await
}

/// What the scenario measured.
#[derive(Debug)]
pub struct Outcome {
    pub change_request: String,
    pub session: String,
    /// Seconds from the grant's expiry to the recorded revocation.
    pub revoke_lag: f64,
}

/// Admin objects applied, alice denied, grant applied, change request opened, approved, alice
/// in and her session started, expiry, alice out, session terminated, denied again.
pub async fn grant_lifecycle(
    env: &TestEnv,
    fx: &Fixtures,
    duration: &str,
    say: &dyn Fn(&str),
) -> crate::Result<Outcome> {
    let vars = fx.variables(&env.namespace, &format!("-{}", env.id), duration);
    env.apply_yaml(&seed::manifests(&env.platform.repo, &vars, &["01", "02"])?)
        .await?;
    say("Applied the AwsAccounts and the AccessGroup (examples/seed/01, 02).");
    let denied = fx.start_port_forwarding(&fx.alice).await?;
    let denial = denied
        .err()
        .context("alice got a session before any approval")?;
    ensure!(
        denial.starts_with("AccessDeniedException"),
        "unexpected denial: {denial}"
    );
    say(&format!(
        "Before approval, alice's start-session is refused:\n    {denial}"
    ));

    env.apply_yaml(&seed::manifests(&env.platform.repo, &vars, &["03"])?)
        .await?;
    let api: Api<ProductionAccessGrant> = env.api();
    let waiting = grant_where(&api, "a change request", Duration::from_secs(60), |g| {
        phase(g) == GrantPhase::AwaitingApproval
            && g.status
                .as_ref()
                .and_then(|s| s.approval_id.as_ref())
                .is_some()
    })
    .await?;
    let change_request = waiting
        .status
        .and_then(|s| s.approval_id)
        .unwrap_or_default();
    say(&format!(
        "Applied the grant; the operator opened change request {change_request}."
    ));
    ensure!(
        fx.group_members(GROUP).await?.is_empty(),
        "someone is in the group before approval"
    );
    ensure!(
        fx.start_port_forwarding(&fx.alice).await?.is_err(),
        "session allowed while pending"
    );

    fx.approve(&fx.carol, &change_request).await?;
    let approved_at = std::time::Instant::now();
    let active = grant_where(&api, "Active", Duration::from_secs(30), |g| {
        phase(g) == GrantPhase::Active
    })
    .await?;
    let seen_after = approved_at.elapsed().as_secs_f64();
    let status = active.status.clone().unwrap_or_default();
    ensure!(
        status.approved_by.as_deref() == Some(fx.carol.arn.as_str()),
        "approver recorded as {:?}",
        status.approved_by
    );
    let members = fx.group_members(GROUP).await?;
    ensure!(
        members == vec!["alice".to_string()],
        "group members are {members:?}"
    );
    let session = fx.start_port_forwarding(&fx.alice).await?;
    let session = session.map_err(|e| anyhow::anyhow!("alice must get a session now: {e}"))?;
    ensure!(session.starts_with("alice-"), "session id {session}");
    let expiry = status
        .window
        .as_ref()
        .map(|w| w.expiry.0)
        .unwrap_or(Timestamp::now());
    // Told once the operator has acted on it, so the table shows the grant Active, not the
    // AwaitingApproval it still showed the moment carol approved.
    say(&format!(
        "carol approved the change request (SendAutomationSignal Approve); {seen_after:.1}s \
         later the grant is Active until {expiry} and alice is in {GROUP}.\n    \
         Starting session with SessionId: {session}\n    \
         Port 11111 opened for sessionId {session}."
    ));

    let expired = grant_where(&api, "Expired", Duration::from_secs(120), |g| {
        phase(g) == GrantPhase::Expired
    })
    .await?;
    let revoked_at = expired
        .status
        .and_then(|s| s.revoked_at)
        .map(|t| t.0)
        .unwrap_or(expiry);
    let revoke_lag = revoked_at.duration_since(expiry).as_secs_f64();
    ensure!(
        (0.0..2.0).contains(&revoke_lag),
        "revoked {revoke_lag}s after expiry"
    );
    ensure!(
        fx.group_members(GROUP).await?.is_empty(),
        "alice is still in the group"
    );
    let state = fx.session_status(&session).await?;
    ensure!(
        state.as_deref() == Some("Terminated"),
        "session is {state:?}"
    );
    let again = fx.start_port_forwarding(&fx.alice).await?;
    let again = again
        .err()
        .context("alice still gets a session after expiry")?;
    ensure!(
        again.starts_with("AccessDeniedException"),
        "unexpected denial: {again}"
    );
    say(&format!(
        "At expiry (revoked {revoke_lag:.3}s after it) alice left the group, session {session} \
         was terminated, and start-session is refused again."
    ));
    Ok(Outcome {
        change_request,
        session,
        revoke_lag,
    })
}

/// Name of the seed route.
pub const ROUTE: &str = "admin-console";

/// Applies the seed route and waits until every hop is ready; checks the endpoint and the DNS
/// record through the Jump account's APIs. Returns the route's URL.
pub async fn route_ready(
    env: &TestEnv,
    fx: &Fixtures,
    say: &dyn Fn(&str),
) -> crate::Result<String> {
    use prodaccess::crd::{ConditionExt, PrivateLinkRoute};
    let vars = fx.variables(&env.namespace, &format!("-{}", env.id), "1h");
    env.apply_yaml(&seed::manifests(&env.platform.repo, &vars, &["01", "04"])?)
        .await?;
    let api: Api<PrivateLinkRoute> = env.api();
    let route = eventually("the route Ready", Duration::from_secs(120), || async {
        let route = api.get(ROUTE).await?;
        let ready = route
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.as_slice().is_true("Ready"));
        Ok(ready.then_some(route))
    })
    .await?;
    let status = route.status.unwrap_or_default();
    let url = status.url.clone().context("a Ready route has a URL")?;
    ensure!(
        url == format!("https://{}:10443", seed::HOST),
        "url is {url}"
    );
    let endpoint = status
        .hops
        .endpoint_id
        .clone()
        .context("no endpoint in status")?;
    let ec2 = aws_sdk_ec2::Client::new(&fx.jump);
    let out = ec2
        .describe_vpc_endpoints()
        .vpc_endpoint_ids(&endpoint)
        .send()
        .await?;
    let state = out
        .vpc_endpoints()
        .first()
        .and_then(|e| e.state())
        .map(|s| s.as_str().to_string());
    ensure!(
        state
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("available")),
        "endpoint is {state:?}"
    );
    say(&format!(
        "Route {ROUTE} is Ready: {url}\n    NLB {} -> ALB {} (certificate {})\n    \
         endpoint service {} <- endpoint {endpoint} ({}), record {}",
        status.hops.nlb_arn.as_deref().unwrap_or("?"),
        status.hops.alb_arn.as_deref().unwrap_or("?"),
        status.hops.certificate_status.as_deref().unwrap_or("?"),
        status.hops.endpoint_service_name.as_deref().unwrap_or("?"),
        state.unwrap_or_default(),
        status.hops.record.as_deref().unwrap_or("?"),
    ));
    Ok(url)
}
