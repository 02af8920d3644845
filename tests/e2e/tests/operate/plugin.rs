//! Running the built `kubectl-prodaccess` binary the way a person would, with a kubeconfig.

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The plugin binary, next to the operator binary (`target/<profile>/`); built when missing.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("PRODACCESS_PLUGIN_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = prodaccess_e2e::operator::binary()?.with_file_name("kubectl-prodaccess");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "prodaccess-operator",
                "--bin",
                "kubectl-prodaccess",
            ])
            .status()?;
        if !status.success() || !path.exists() {
            bail!(
                "no plugin binary at {} (cargo build ran: {status})",
                path.display()
            );
        }
    }
    Ok(path)
}

/// What one run printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

fn command(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new(binary()?);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBE_RS_DEBUG_IMPERSONATE_USER")
        .env_remove("KUBE_RS_DEBUG_IMPERSONATE_GROUP")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Runs the plugin to completion (at most `timeout`).
pub async fn run(kubeconfig: &Path, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
    let child = command(kubeconfig, args)?
        .spawn()
        .context("start kubectl-prodaccess")?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("kubectl prodaccess {args:?} ran longer than {timeout:?}"))??;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    })
}

/// A run in progress whose output is read line by line.
pub struct Running {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pub seen: Vec<String>,
}

impl Running {
    pub fn start(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<Running> {
        let mut child = command(kubeconfig, args)?
            .spawn()
            .context("start kubectl-prodaccess")?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(Running {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        })
    }

    /// Reads lines until one satisfies `want`; returns it.
    pub async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.lines.next_line()).await;
            match next {
                Ok(Ok(Some(line))) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return Ok(line);
                    }
                }
                Ok(Ok(None)) => bail!("plugin exited before {what}; printed {:#?}", self.seen),
                Ok(Err(err)) => bail!("reading the plugin's output: {err}"),
                Err(_) => bail!("no {what} within {timeout:?}; printed {:#?}", self.seen),
            }
        }
    }

    /// Reads the rest of the output and waits for the exit; returns (success, stderr).
    pub async fn finish(
        mut self,
        timeout: Duration,
    ) -> anyhow::Result<(bool, Vec<String>, String)> {
        let rest = async {
            while let Some(line) = self.lines.next_line().await? {
                self.seen.push(line);
            }
            let status = self.child.wait().await?;
            let mut stderr = String::new();
            if let Some(mut err) = self.child.stderr.take() {
                use tokio::io::AsyncReadExt;
                err.read_to_string(&mut stderr).await?;
            }
            anyhow::Ok((status.success(), stderr))
        };
        let (success, stderr) = tokio::time::timeout(timeout, rest)
            .await
            .context("the plugin did not exit in time")??;
        Ok((success, self.seen, stderr))
    }
}
