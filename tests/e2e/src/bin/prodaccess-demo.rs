//! `make demo`: the article's scenario on the local platform, told as it happens.
//!
//! It creates the AWS side the article starts from (Jump and Production accounts, the Windows
//! jump host, alice with MFA, the approver carol, the change template), runs the operator,
//! applies `examples/seed/`, and walks the grant through approval and expiry, printing the
//! resources with their printer columns and the matching state in AWS. Exit 0 means the
//! scenario reached every expected state.

use prodaccess_e2e::scenario::{grant_lifecycle, route_ready, GROUP};
use prodaccess_e2e::seed::{self, Fixtures};
use prodaccess_e2e::{Operator, TestEnv};
use std::process::ExitCode;

fn kubectl_get(env: &TestEnv) {
    let kubectl = std::env::var("PRODACCESS_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = std::process::Command::new(kubectl)
        .env("KUBECONFIG", &env.platform.kubeconfig)
        .args(["get", "prodaccess", "-A", "-o", "wide", "-l"])
        .arg(format!(
            "{}={}",
            prodaccess_e2e::platform::TEST_LABEL,
            env.id
        ))
        .output();
    match out {
        Ok(out) => print!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(err) => println!("(kubectl not available: {err})"),
    }
}

async fn demo() -> anyhow::Result<()> {
    let env = TestEnv::new("demo").await?;
    println!(
        "==> Namespace {} on {}",
        env.namespace,
        env.platform.kubeconfig.display()
    );
    seed::enable_enforcement(&env.platform.aws_endpoint).await?;
    let fx = Fixtures::create(&env.platform.aws_endpoint).await?;
    println!(
        "==> AWS emulator {}: Jump account {}, Production account {}, jump host {}",
        env.platform.aws_endpoint, fx.jump_account, fx.prod_account, fx.jump_host
    );
    let mut operator = Operator::start(&env, "demo-operator", &[])?;
    operator.wait_ready().await?;
    println!("==> Operator running (log: {})", operator.log.display());
    let say = |text: &str| {
        println!("==> {text}");
        kubectl_get(&env);
    };
    let url = route_ready(&env, &fx, &say).await?;
    let outcome = grant_lifecycle(&env, &fx, "30s", &say).await?;
    println!(
        "==> IAM group {GROUP} members now: {:?}",
        fx.group_members(GROUP).await?
    );
    println!(
        "==> Done: route {url} ready; change request {}, session {}, \
         revocation {:.3}s after expiry.",
        outcome.change_request, outcome.session, outcome.revoke_lag
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
