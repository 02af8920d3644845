//! The operator under test, run as its real binary and scoped to one test by label.

use anyhow::{bail, Context as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::platform::{TestEnv, TEST_LABEL};

/// A running `prodaccess-operator run`. Dropping it kills the process; if the test is
/// failing at that moment, the tail of the operator's log is printed.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    pub metrics_port: u16,
}

/// The operator binary, built on demand when a test is run on its own. Test programs live in
/// `target/<profile>/deps/`, the demo in `target/<profile>/`; both find `target/<profile>/`.
pub fn binary() -> crate::Result<PathBuf> {
    if let Ok(path) = std::env::var("PRODACCESS_OPERATOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("no target dir")?;
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir = dir.parent().context("no target dir")?;
    }
    let path = dir.join("prodaccess-operator");
    if !path.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "-q",
                "-p",
                "prodaccess-operator",
                "--bin",
                "prodaccess-operator",
            ])
            .status()?;
        if !status.success() || !path.exists() {
            bail!(
                "no operator binary at {} (cargo build ran: {status})",
                path.display()
            );
        }
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> crate::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Operator {
    /// Starts the operator for this test with fast resyncs; `extra` adds or overrides flags.
    pub fn start(env: &TestEnv, name: &str, extra: &[&str]) -> crate::Result<Operator> {
        let port = free_port()?;
        let log = env.platform.log_dir.join(format!("{}-{name}.log", env.id));
        let file = std::fs::File::create(&log)?;
        let selector = format!("{TEST_LABEL}={}", env.id);
        let lease = format!("prodaccess-{}", env.id);
        let metrics = format!("127.0.0.1:{port}");
        let defaults = [
            "--metrics-addr",
            &metrics,
            "--selector",
            &selector,
            "--lease-name",
            &lease,
            "--lease-namespace",
            &env.namespace,
            "--lease-duration",
            "6s",
            "--grant-resync",
            "5s",
            "--route-resync",
            "10s",
            "--account-resync",
            "30s",
            "--approval-poll-min",
            "1s",
            "--approval-poll-max",
            "2s",
            // Tests use windows of a few seconds; the fault and crash tests, whose slow answers
            // make the margin matter, set the default (12s) back.
            "--add-margin",
            "2s",
        ];
        // A flag given in `extra` replaces its default: clap refuses a flag given twice.
        let mut args = vec!["run"];
        for pair in defaults.chunks(2) {
            if !extra.contains(&pair[0]) {
                args.extend_from_slice(pair);
            }
        }
        args.extend_from_slice(extra);
        let child = Command::new(binary()?)
            .args(&args)
            .env("KUBECONFIG", &env.platform.kubeconfig)
            .env("AWS_ENDPOINT_URL", &env.platform.aws_endpoint)
            .env("AWS_ACCESS_KEY_ID", crate::aws::BOOTSTRAP_KEY)
            .env("AWS_SECRET_ACCESS_KEY", crate::aws::BOOTSTRAP_SECRET)
            .env("AWS_REGION", crate::aws::REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info,prodaccess=debug")
            .env("POD_NAME", format!("{name}-{}", std::process::id()))
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("start the operator binary")?;
        Ok(Operator {
            child,
            log,
            metrics_port: port,
        })
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&mut self) -> crate::Result<()> {
        let url = format!("http://127.0.0.1:{}/ready", self.metrics_port);
        for _ in 0..150 {
            if let Some(status) = self.child.try_wait()? {
                bail!("operator exited with {status}:\n{}", self.log_tail(40));
            }
            if http_get(&url).await.is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("operator never became ready:\n{}", self.log_tail(40))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> crate::Result<String> {
        let (_, body) =
            http_get(&format!("http://127.0.0.1:{}/metrics", self.metrics_port)).await?;
        Ok(body)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- operator log {} (tail) ---\n{}",
                self.log.display(),
                self.log_tail(80)
            );
        }
        self.kill();
    }
}

/// Prints the tail of the platform's own logs (API server, emulator), next to the operator's.
pub fn dump_server_logs(dir: Option<&std::path::Path>) {
    let Some(dir) = dir else { return };
    for name in ["kube-apiserver.log", "emulator.log"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        eprintln!("--- {} (tail) ---\n{tail}", dir.join(name).display());
    }
}

/// A minimal HTTP/1.0 GET over loopback, enough for the health and metrics endpoints.
pub async fn http_get(url: &str) -> crate::Result<(u16, String)> {
    http("GET", url, "").await
}

/// A minimal HTTP/1.0 request over loopback (health endpoints, the emulator's control API).
pub async fn http(method: &str, url: &str, body: &str) -> crate::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("only http URLs")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
