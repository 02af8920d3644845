//! The operator as the benchmark runs it: the real binary with the settings under test, its
//! `/metrics`, and its memory and CPU read from `/proc`.
//!
//! The end-to-end tests' [`crate::Operator`] starts the operator with fast resyncs for short
//! tests; the benchmark measures the operator's own defaults (or what it is told to), so it
//! builds the command line itself.

use anyhow::{bail, Context as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::operator::{binary, free_port, http_get};
use crate::platform::{TestEnv, TEST_LABEL};

/// The settings the benchmark passes to one operator process.
#[derive(Clone, Debug)]
pub struct OperatorSettings {
    pub grant_resync: String,
    pub route_resync: String,
    pub approval_poll_min: String,
    pub approval_poll_max: String,
    /// `--aws-budget` overrides; empty means the operator's defaults.
    pub budget: String,
}

/// A running operator. Dropping it kills the process.
pub struct BenchOperator {
    child: Child,
    pub log: PathBuf,
    pub metrics_port: u16,
    /// Seconds since the Unix epoch when the process was started.
    pub started: f64,
}

/// Memory and CPU of a process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
}

/// Seconds since the Unix epoch, as the emulator's call log writes them.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl BenchOperator {
    /// Starts the operator scoped to `env`'s objects, with its own Lease so that it never waits
    /// for an earlier process's Lease to run out.
    pub fn start(env: &TestEnv, name: &str, settings: &OperatorSettings) -> crate::Result<Self> {
        let port = free_port()?;
        let log = env.platform.log_dir.join(format!("{}-{name}.log", env.id));
        let file = std::fs::File::create(&log)?;
        let mut args = vec![
            "run".to_string(),
            format!("--metrics-addr=127.0.0.1:{port}"),
            format!("--selector={TEST_LABEL}={}", env.id),
            format!("--lease-name=prodaccess-{}-{name}", env.id),
            format!("--lease-namespace={}", env.namespace),
            format!("--grant-resync={}", settings.grant_resync),
            format!("--route-resync={}", settings.route_resync),
            format!("--approval-poll-min={}", settings.approval_poll_min),
            format!("--approval-poll-max={}", settings.approval_poll_max),
        ];
        if !settings.budget.is_empty() {
            args.push(format!("--aws-budget={}", settings.budget));
        }
        let started = now();
        let child = Command::new(binary()?)
            .args(&args)
            .env("KUBECONFIG", &env.platform.kubeconfig)
            .env("AWS_ENDPOINT_URL", &env.platform.aws_endpoint)
            .env("AWS_ACCESS_KEY_ID", crate::aws::BOOTSTRAP_KEY)
            .env("AWS_SECRET_ACCESS_KEY", crate::aws::BOOTSTRAP_SECRET)
            .env("AWS_REGION", crate::aws::REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .env("POD_NAME", format!("bench-{name}-{}", std::process::id()))
            .env_remove("AWS_PROFILE")
            .env_remove("PRODACCESS_AWS_BUDGET")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("start the operator binary")?;
        Ok(Self {
            child,
            log,
            metrics_port: port,
            started,
        })
    }

    /// The process ID, for `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/ready` answers 200 (at most a minute).
    pub async fn wait_ready(&mut self) -> crate::Result<()> {
        let url = format!("http://127.0.0.1:{}/ready", self.metrics_port);
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                bail!("operator exited with {status}; see {}", self.log.display());
            }
            if http_get(&url).await.is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("operator never became ready; see {}", self.log.display())
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> crate::Result<String> {
        metrics_at(self.metrics_port).await
    }

    /// Resident memory, its peak, and CPU time (user + system) so far.
    pub fn usage(&self) -> crate::Result<Usage> {
        usage(self.pid())
    }

    /// Fails when the process has exited.
    pub fn check_running(&mut self) -> crate::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("operator exited with {status}; see {}", self.log.display()),
        }
    }

    /// How the process ended, if it has (`null` in the report while it runs).
    pub fn exit(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(err) => Some(format!("unknown: {err}")),
        }
    }

    /// Stops the process at once (SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BenchOperator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Prometheus text of the operator's `/metrics` on `port`.
pub async fn metrics_at(port: u16) -> crate::Result<String> {
    let (code, body) = http_get(&format!("http://127.0.0.1:{port}/metrics")).await?;
    anyhow::ensure!(code == 200, "/metrics answered {code}");
    Ok(body)
}

/// Reads `VmRSS`, `VmHWM` and `utime + stime` of `pid` from `/proc`.
pub fn usage(pid: u32) -> crate::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_default()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_default()
    };
    // utime and stime are fields 14 and 15 of the line; field 3 is the first after the name.
    let cpu_ticks = ticks(11) + ticks(12);
    Ok(Usage {
        rss_mib: kib("VmRSS:") / 1024.0,
        peak_rss_mib: kib("VmHWM:") / 1024.0,
        cpu_seconds: cpu_ticks / clock_ticks(),
    })
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 where it cannot be read.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Sum of the samples of metric `name` whose labels include every pair of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(inner) => inner.split_once('}')?,
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            let wanted = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .fold(0.0, |sum, v| sum + v)
}

/// What the operator's own request budget reports: requests that passed it and the time they
/// waited, by service and kind.
pub fn budget_metrics(text: &str) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("prodaccess_aws_budget_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let key = labels.replace('"', "").replace(',', " ");
        out.insert(
            key,
            serde_json::json!(value.trim().parse::<f64>().unwrap_or(0.0)),
        );
    }
    let wait = metric(text, "prodaccess_aws_budget_wait_seconds_sum", &[]);
    serde_json::json!({"requests": out, "wait_seconds": wait})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_over_matching_labels() {
        let text = "# HELP x\n\
            prodaccess_reconciles_total{kind=\"ProductionAccessGrant\"} 5\n\
            prodaccess_reconciles_total{kind=\"AccessGroup\"} 2\n\
            prodaccess_reconciles_total_other 9\n\
            prodaccess_leader 1\n";
        let name = "prodaccess_reconciles_total";
        assert_eq!(metric(text, name, &[]), 7.0);
        assert_eq!(metric(text, name, &[("kind", "AccessGroup")]), 2.0);
        assert_eq!(metric(text, "prodaccess_leader", &[]), 1.0);
    }

    #[test]
    fn own_process_usage_is_readable() {
        let usage = usage(std::process::id()).unwrap_or_default();
        assert!(usage.rss_mib > 0.0 && usage.peak_rss_mib >= usage.rss_mib);
    }
}
