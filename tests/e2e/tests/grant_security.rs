//! The security invariants of grants, each proven on the platform (the operator binary, a real
//! kube-apiserver, the AWS emulator with IAM enforcement): who may use an account or group,
//! what an approval can back, who may approve, that approved terms cannot be widened, that a
//! finished grant stays finished, that exclusive groups stay exclusive, and that access ends on
//! time inside AWS even with the operator down.

use anyhow::{ensure, Context as _};
use jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use prodaccess::crd::{GrantPhase, ProductionAccessGrant};
use prodaccess_e2e::grants::{
    condition, events, message, phase, put_user_policy, wait_grant, wait_phase, wait_reason, World,
    IAM_GROUP, OPEN_TEMPLATE,
};
use prodaccess_e2e::platform::eventually;
use prodaccess_e2e::seed::CHANGE_TEMPLATE;
use prodaccess_e2e::{Operator, TestEnv};
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// A test's namespace and AWS world with the operator running.
async fn start(test: &str) -> anyhow::Result<(TestEnv, World, Operator)> {
    let env = TestEnv::new(test).await?;
    let world = World::create(&env).await?;
    let mut operator = Operator::start(&env, "operator", &[])?;
    operator.wait_ready().await?;
    Ok((env, world, operator))
}

/// Nothing the grant controller did in AWS changed anything, and alice has no access.
async fn nothing_granted(world: &World) -> anyhow::Result<()> {
    let writes = world.grant_writes().await?;
    ensure!(writes.is_empty(), "the grant controller wrote: {writes:?}");
    ensure!(world.members().await?.is_empty(), "the group has members");
    ensure!(
        world.guard_policy("alice").await?.is_none(),
        "alice carries an expiry guard"
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Refuser {
    Account,
    Group,
}

/// A grant from a namespace that the account (or the group) does not allow fails with
/// `NamespaceNotAllowed` and writes nothing in AWS, even with an approved change request;
/// allowing the namespace then lets the same grant through, so only the namespace stopped it.
async fn namespace_not_allowed(test: &str, by: Refuser) -> anyhow::Result<()> {
    let (env, world, _operator) = start(test).await?;
    let ns = env.namespace.as_str();
    let elsewhere = "team-elsewhere";
    let account_ns = if by == Refuser::Account {
        elsewhere
    } else {
        ns
    };
    let group_ns = if by == Refuser::Group { elsewhere } else { ns };
    world
        .apply_admin(
            &env,
            world.account_manifest(&[account_ns]),
            world.group_manifest(&[group_ns]),
        )
        .await?;
    let cr = world.approved_change_request().await?;
    env.apply_value(&mut world.grant_manifest("alice-console", "alice", "5m", Some(&cr)))
        .await?;

    let grant = wait_reason(
        &env,
        "alice-console",
        GrantPhase::Failed,
        "NamespaceNotAllowed",
        WAIT,
    )
    .await?;
    ensure!(message(&grant).contains(ns), "message: {}", message(&grant));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grant = wait_phase(&env, "alice-console", GrantPhase::Failed, WAIT).await?;
    ensure!(
        grant
            .status
            .as_ref()
            .and_then(|s| s.approved.as_ref())
            .is_none(),
        "the approval was accepted"
    );
    nothing_granted(&world).await?;

    // The admin allows the namespace: the failed grant is fixable and now goes through.
    world
        .apply_admin(
            &env,
            world.account_manifest(&[ns]),
            world.group_manifest(&[ns]),
        )
        .await?;
    wait_phase(&env, "alice-console", GrantPhase::Active, WAIT)
        .await
        .context("after allowing the namespace")?;
    ensure!(world.members().await? == vec!["alice".to_string()]);
    world.teardown(&env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_not_allowed_by_the_account_cannot_use_it() -> anyhow::Result<()> {
    namespace_not_allowed("ns-denied-account", Refuser::Account).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_not_allowed_by_the_group_cannot_use_it() -> anyhow::Result<()> {
    namespace_not_allowed("ns-denied-group", Refuser::Group).await
}

/// A change request approved for bob, or for another IAM group, cannot back alice's grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_for_another_user_or_group_is_denied() -> anyhow::Result<()> {
    let (env, world, _operator) = start("approval-mismatch").await?;
    world.apply_default_admin(&env, false).await?;
    let for_bob = world
        .open_change_request(&world.dave, CHANGE_TEMPLATE, "bob", IAM_GROUP)
        .await?;
    world.fx.approve(&world.fx.carol, &for_bob).await?;
    let for_admins = world
        .open_change_request(&world.dave, CHANGE_TEMPLATE, "alice", "Admins")
        .await?;
    world.fx.approve(&world.fx.carol, &for_admins).await?;

    for (name, cr, named) in [
        ("with-bobs-approval", &for_bob, "bob"),
        ("with-admins-approval", &for_admins, "Admins"),
    ] {
        env.apply_value(&mut world.grant_manifest(name, "alice", "5m", Some(cr)))
            .await?;
        let grant = wait_reason(&env, name, GrantPhase::Denied, "ApprovalMismatch", WAIT).await?;
        ensure!(
            message(&grant).contains(named),
            "{name}: {}",
            message(&grant)
        );
    }
    nothing_granted(&world).await?;

    // The approval itself was fine for what it names: bob's grant goes through with it.
    env.apply_value(&mut world.grant_manifest("bob-console", "bob", "5m", Some(&for_bob)))
        .await?;
    wait_phase(&env, "bob-console", GrantPhase::Active, WAIT).await?;
    ensure!(world.members().await? == vec!["bob".to_string()]);
    world.teardown(&env).await
}

/// One change request backs one grant: a second grant naming it is denied while the first
/// stays as it was, and when two grants race for one approval exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_request_cannot_back_two_grants() -> anyhow::Result<()> {
    let (env, world, _operator) = start("approval-reuse").await?;
    world.apply_default_admin(&env, false).await?;
    let cr = world.approved_change_request().await?;
    env.apply_value(&mut world.grant_manifest("first", "alice", "5m", Some(&cr)))
        .await?;
    let first = wait_phase(&env, "first", GrantPhase::Active, WAIT).await?;
    let guard = world.guard_policy("alice").await?;
    let writes = world.grant_writes().await?.len();

    env.apply_value(&mut world.grant_manifest("second", "alice", "30m", Some(&cr)))
        .await?;
    let second = wait_reason(
        &env,
        "second",
        GrantPhase::Denied,
        "ApprovalAlreadyUsed",
        WAIT,
    )
    .await?;
    ensure!(
        message(&second).contains("first"),
        "message: {}",
        message(&second)
    );
    ensure!(world.guard_policy("alice").await? == guard, "guard changed");
    ensure!(
        world.grant_writes().await?.len() == writes,
        "the denied grant wrote to AWS"
    );
    let api: Api<ProductionAccessGrant> = env.api();
    let again = api.get("first").await?;
    ensure!(
        again.status.as_ref().map(|s| &s.window) == first.status.as_ref().map(|s| &s.window),
        "the first grant's window moved"
    );

    // Two grants applied at once with one fresh approval: exactly one of them is accepted.
    let cr = world.approved_change_request().await?;
    let mut racer_a = world.grant_manifest("racer-a", "alice", "5m", Some(&cr));
    let mut racer_b = world.grant_manifest("racer-b", "alice", "5m", Some(&cr));
    let (a, b) = tokio::join!(env.apply_value(&mut racer_a), env.apply_value(&mut racer_b));
    a?;
    b?;
    let settled =
        |g: &ProductionAccessGrant| matches!(phase(g), GrantPhase::Active | GrantPhase::Denied);
    let a = wait_grant(&env, "racer-a", "settled", WAIT, settled).await?;
    let b = wait_grant(&env, "racer-b", "settled", WAIT, settled).await?;
    let mut phases = vec![phase(&a), phase(&b)];
    phases.sort_by_key(|p| p.as_str());
    ensure!(
        phases == vec![GrantPhase::Active, GrantPhase::Denied],
        "racing grants ended {phases:?}"
    );
    let loser = if phase(&a) == GrantPhase::Denied {
        &a
    } else {
        &b
    };
    ensure!(
        condition(loser, "Ready").is_some_and(|c| c.reason == "ApprovalAlreadyUsed"),
        "loser: {}",
        message(loser)
    );
    world.teardown(&env).await
}

/// A requester who approves their own change request is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_approval_is_denied() -> anyhow::Result<()> {
    let (env, world, _operator) = start("self-approval").await?;
    world.apply_default_admin(&env, false).await?;
    // dave opens the request with his own keys, from a template anyone may approve, and
    // approves it himself.
    let cr = world
        .open_change_request(&world.dave, OPEN_TEMPLATE, "alice", IAM_GROUP)
        .await?;
    world.fx.approve(&world.dave, &cr).await?;
    env.apply_value(&mut world.grant_manifest("alice-console", "alice", "5m", Some(&cr)))
        .await?;
    let grant = wait_reason(
        &env,
        "alice-console",
        GrantPhase::Denied,
        "SelfApproval",
        WAIT,
    )
    .await?;
    ensure!(
        message(&grant).contains("own requester") && message(&grant).contains("user/dave"),
        "message: {}",
        message(&grant)
    );
    nothing_granted(&world).await?;
    world.teardown(&env).await
}

/// The user being granted cannot approve their own access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_by_the_granted_user_is_denied() -> anyhow::Result<()> {
    let (env, world, _operator) = start("user-approval").await?;
    world.apply_default_admin(&env, false).await?;
    let signal = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ssm:SendAutomationSignal", "Resource": "*"}]
    });
    put_user_policy(&world.fx.jump, "alice", "Approver", &signal).await?;
    let cr = world
        .open_change_request(&world.dave, OPEN_TEMPLATE, "alice", IAM_GROUP)
        .await?;
    world.fx.approve(&world.fx.alice, &cr).await?;
    env.apply_value(&mut world.grant_manifest("alice-console", "alice", "5m", Some(&cr)))
        .await?;
    let grant = wait_reason(
        &env,
        "alice-console",
        GrantPhase::Denied,
        "SelfApproval",
        WAIT,
    )
    .await?;
    ensure!(
        message(&grant).contains("user being granted"),
        "message: {}",
        message(&grant)
    );
    nothing_granted(&world).await?;
    world.teardown(&env).await
}

/// Editing an approved, active grant to another user or a longer duration is refused with
/// `SpecAccepted=False` (`WideningRefused`) and changes nothing in AWS or in the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widening_an_approved_grant_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let (env, world, _operator) = start("widening").await?;
    world.apply_default_admin(&env, false).await?;
    let cr = world.approved_change_request().await?;
    let manifest = world.grant_manifest("alice-console", "alice", "2m", Some(&cr));
    env.apply_value(&mut manifest.clone()).await?;
    let active = wait_phase(&env, "alice-console", GrantPhase::Active, WAIT).await?;
    let window = active.status.as_ref().and_then(|s| s.window.clone());
    let guard = world.guard_policy("alice").await?;
    ensure!(guard.is_some(), "no expiry guard on alice");
    let writes = world.grant_writes().await?.len();

    let mut to_bob = manifest.clone();
    to_bob["spec"]["user"] = json!("bob");
    let mut longer = manifest.clone();
    longer["spec"]["duration"] = json!("50m");
    for (edit, mut changed) in [("user", to_bob), ("duration", longer)] {
        env.apply_value(&mut changed).await?;
        let refused = wait_grant(&env, "alice-console", "WideningRefused", WAIT, |g| {
            condition(g, "SpecAccepted")
                .is_some_and(|c| c.status == "False" && c.reason == "WideningRefused")
                && message(g).contains(edit)
        })
        .await?;
        // Give a resync the chance to act on the edit, then check that nothing did.
        tokio::time::sleep(Duration::from_secs(6)).await;
        ensure!(phase(&refused) == GrantPhase::Active, "{edit}: phase moved");
        let now = wait_phase(&env, "alice-console", GrantPhase::Active, WAIT).await?;
        ensure!(
            now.status.as_ref().and_then(|s| s.window.clone()) == window,
            "{edit}: the window changed"
        );
        ensure!(
            world.members().await? == vec!["alice".to_string()],
            "{edit}: members changed"
        );
        ensure!(
            world.guard_policy("alice").await? == guard,
            "{edit}: guard changed"
        );
        ensure!(
            world.guard_policy("bob").await?.is_none(),
            "{edit}: bob got a guard"
        );
        let after = world.grant_writes().await?;
        ensure!(
            after.len() == writes,
            "{edit}: AWS writes after the edit: {:?}",
            &after[writes..]
        );
    }
    let warned = events(&env, &env.namespace, "alice-console").await?;
    ensure!(
        warned
            .iter()
            .any(|e| e.reason == "WideningRefused" && e.type_ == "Warning"),
        "no WideningRefused Event: {warned:?}"
    );

    // Putting the approved terms back clears the refusal.
    env.apply_value(&mut manifest.clone()).await?;
    wait_grant(&env, "alice-console", "SpecAccepted cleared", WAIT, |g| {
        condition(g, "SpecAccepted").is_none() && phase(g) == GrantPhase::Active
    })
    .await?;
    world.teardown(&env).await
}

/// Once a grant has expired, applying its manifest again (as Git does) grants nothing, and
/// neither does re-creating it after deletion, not even once the group's approval ledger has
/// let go of the approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_an_expired_grants_manifest_grants_nothing() -> anyhow::Result<()> {
    let (env, world, _operator) = start("reapply-expired").await?;
    // A short maximum, so that the group's ledger may let go of the approval within the test.
    let mut group = world.group_manifest(&[&env.namespace]);
    group["spec"]["maxDuration"] = json!("10s");
    group["spec"]["defaultDuration"] = json!("10s");
    world
        .apply_admin(&env, world.account_manifest(&[&env.namespace]), group)
        .await?;
    let cr = world.approved_change_request().await?;
    let manifest = world.grant_manifest("alice-console", "alice", "8s", Some(&cr));
    env.apply_value(&mut manifest.clone()).await?;
    wait_phase(&env, "alice-console", GrantPhase::Active, WAIT).await?;
    let expired = wait_phase(&env, "alice-console", GrantPhase::Expired, WAIT).await?;
    let revoked_at = expired
        .status
        .as_ref()
        .and_then(|s| s.revoked_at.clone())
        .context("no revokedAt")?;
    ensure!(world.members().await?.is_empty(), "alice still in");

    // Git applies the same manifest again.
    env.apply_value(&mut manifest.clone()).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let grant = wait_phase(&env, "alice-console", GrantPhase::Expired, WAIT).await?;
    ensure!(
        grant.status.as_ref().and_then(|s| s.revoked_at.as_ref()) == Some(&revoked_at),
        "the expired grant was touched"
    );
    ensure!(world.members().await?.is_empty(), "re-apply let alice in");
    ensure!(
        world.guard_policy("alice").await?.is_none(),
        "guard is back"
    );

    // Time passes and other grants claim approvals, which lets the ledger drop old entries.
    let groups: Api<prodaccess::crd::AccessGroup> = Api::all(env.client.clone());
    let group = groups.get(&world.group).await?;
    let until = group
        .status
        .as_ref()
        .and_then(|s| s.consumed_approvals.iter().find(|c| c.approval_id == cr))
        .map(|c| c.until.0)
        .context("the approval is not in the group's ledger")?;
    let left = until.duration_since(Timestamp::now()).as_secs_f64();
    if left > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(left + 1.0)).await;
    }
    let for_bob = world
        .open_change_request(&world.dave, CHANGE_TEMPLATE, "bob", IAM_GROUP)
        .await?;
    world.fx.approve(&world.fx.carol, &for_bob).await?;
    env.apply_value(&mut world.grant_manifest("bob-console", "bob", "8s", Some(&for_bob)))
        .await?;
    wait_grant(&env, "bob-console", "approved", WAIT, |g| {
        g.status.as_ref().is_some_and(|s| s.approved.is_some())
    })
    .await?;

    // The expired grant is deleted and Git (Argo CD self-heal) creates it again.
    let api: Api<ProductionAccessGrant> = env.api();
    api.delete("alice-console", &DeleteParams::default())
        .await?;
    eventually("alice-console deleted", WAIT, || async {
        Ok(api.get_opt("alice-console").await?.is_none().then_some(()))
    })
    .await?;
    env.apply_value(&mut manifest.clone()).await?;
    let recreated = wait_grant(&env, "alice-console", "settled", WAIT, |g| {
        matches!(
            phase(g),
            GrantPhase::Active | GrantPhase::Denied | GrantPhase::Scheduled
        )
    })
    .await?;
    ensure!(
        phase(&recreated) == GrantPhase::Denied,
        "the re-created grant is {:?}: {}",
        phase(&recreated),
        message(&recreated)
    );
    let members = world.members().await?;
    ensure!(
        !members.contains(&"alice".to_string()),
        "members: {members:?}"
    );
    ensure!(
        world.guard_policy("alice").await?.is_none(),
        "alice guarded"
    );
    world.teardown(&env).await
}

/// In an exclusive group, a member added by hand without an active grant is removed within
/// one resync (5 s in tests) with a Warning Event naming them; the granted member stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_group_loses_a_hand_added_member_within_one_resync() -> anyhow::Result<()> {
    let (env, world, _operator) = start("exclusive").await?;
    world.apply_default_admin(&env, true).await?;
    let cr = world.approved_change_request().await?;
    env.apply_value(&mut world.grant_manifest("alice-console", "alice", "5m", Some(&cr)))
        .await?;
    wait_phase(&env, "alice-console", GrantPhase::Active, WAIT).await?;
    let iam = aws_sdk_iam::Client::new(&world.fx.jump);
    for intruder in ["bob", "dave"] {
        iam.add_user_to_group()
            .group_name(IAM_GROUP)
            .user_name(intruder)
            .send()
            .await?;
        let added = Instant::now();
        eventually(
            &format!("{intruder} removed"),
            Duration::from_secs(15),
            || async {
                let members = world.members().await?;
                Ok((!members.iter().any(|m| m == intruder)).then_some(()))
            },
        )
        .await?;
        let took = added.elapsed();
        ensure!(
            took < Duration::from_secs(7),
            "{intruder} removed after {took:?}, more than one resync"
        );
        ensure!(
            world.members().await? == vec!["alice".to_string()],
            "the granted member was removed"
        );
        eventually(
            &format!("a Warning Event naming {intruder}"),
            Duration::from_secs(10),
            || async {
                let seen = events(&env, "kube-system", &world.group).await?;
                Ok(seen
                    .iter()
                    .any(|e| {
                        e.type_ == "Warning"
                            && e.reason == "UngrantedMembersRemoved"
                            && e.note.contains(intruder)
                    })
                    .then_some(()))
            },
        )
        .await?;
    }
    world.teardown(&env).await
}

/// With the operator killed while a grant is active, alice keeps her session rights until the
/// expiry and loses them at it: the expiry guard policy makes AWS deny `StartSession` even
/// though she is still in the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_operator_stopped_access_still_ends_at_expiry() -> anyhow::Result<()> {
    let (env, world, mut operator) = start("operator-stopped").await?;
    world.apply_default_admin(&env, false).await?;
    let cr = world.approved_change_request().await?;
    env.apply_value(&mut world.grant_manifest("alice-console", "alice", "15s", Some(&cr)))
        .await?;
    let active = wait_phase(&env, "alice-console", GrantPhase::Active, WAIT).await?;
    let expiry = active
        .status
        .as_ref()
        .and_then(|s| s.window.as_ref())
        .map(|w| w.expiry.0)
        .context("no window")?;
    operator.kill();

    let before = world.fx.start_port_forwarding(&world.fx.alice).await?;
    ensure!(
        before.is_ok(),
        "alice was refused before her expiry: {before:?}"
    );
    let wait = expiry.duration_since(Timestamp::now()).as_secs_f64() + 1.5;
    ensure!(wait > 2.0, "the grant was nearly over before the check");
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;

    ensure!(
        world.members().await? == vec!["alice".to_string()],
        "someone removed alice while the operator was down"
    );
    let after = world.fx.start_port_forwarding(&world.fx.alice).await?;
    let denial = after
        .err()
        .context("alice started a session after her expiry")?;
    ensure!(
        denial.starts_with("AccessDeniedException") && denial.contains("explicit deny"),
        "unexpected answer: {denial}"
    );

    // A new operator cleans up: the overdue grant expires and alice leaves the group.
    let mut operator = Operator::start(&env, "operator-2", &[])?;
    operator.wait_ready().await?;
    wait_phase(&env, "alice-console", GrantPhase::Expired, WAIT).await?;
    ensure!(world.members().await?.is_empty(), "alice still in");
    world.teardown(&env).await
}
