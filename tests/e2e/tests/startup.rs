//! The operator refuses to start, with one line and a non-zero exit, when it cannot work.

use prodaccess_e2e::operator::binary;
use prodaccess_e2e::Platform;
use std::process::Command;

fn run(envs: &[(&str, &str)]) -> anyhow::Result<(i32, String)> {
    let mut command = Command::new(binary()?);
    command.args([
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--leader-election",
        "false",
    ]);
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        command.env_remove(key);
    }
    command.env("AWS_EC2_METADATA_DISABLED", "true");
    command.env("AWS_CONFIG_FILE", "/nonexistent/aws-config");
    command.env(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/aws-credentials",
    );
    command.env("AWS_REGION", "ap-northeast-1");
    for (key, value) in envs {
        command.env(key, value);
    }
    let out = command.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Ok((out.status.code().unwrap_or(-1), stderr))
}

#[test]
fn refuses_to_start_when_the_cluster_is_unreachable() -> anyhow::Result<()> {
    let (code, stderr) = run(&[("KUBECONFIG", "/nonexistent/kubeconfig")])?;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("KUBECONFIG points at /nonexistent/kubeconfig"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn refuses_to_start_without_aws_credentials() -> anyhow::Result<()> {
    let platform = Platform::get()?;
    let kubeconfig = platform.kubeconfig.to_string_lossy().to_string();
    let (code, stderr) = run(&[("KUBECONFIG", &kubeconfig)])?;
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: AWS credentials could not be resolved"),
        "{stderr}"
    );
    Ok(())
}
