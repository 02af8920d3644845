//! `make bench`: runs benchmark phases against the local platform and writes
//! `target/bench/report.json` with a table on stdout.
//!
//! - `prodaccess-bench` runs the phases in `BENCH_PHASES` and writes `BENCH_REPORT`; with
//!   `BENCH_PART=1` it leaves out the table, as `tests/bench/run.sh` runs one phase at a time.
//! - `prodaccess-bench merge PART.json...` combines such partial reports into one.
//!
//! Exit 1 when a phase could not run; missed targets fail the run only with `BENCH_STRICT=1`.

use anyhow::Context as _;
use prodaccess_e2e::bench::{self, report, BenchConfig};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn bench(args: &[String]) -> anyhow::Result<bool> {
    let config = BenchConfig::from_env(&repo())?;
    let (report, part) = match args.first().map(String::as_str) {
        Some("merge") => {
            let parts = args[1..]
                .iter()
                .map(|path| {
                    let text = std::fs::read_to_string(path).with_context(|| path.clone())?;
                    serde_json::from_str::<Value>(&text).with_context(|| path.clone())
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            (bench::merge(&parts, &config), false)
        }
        Some(other) => anyhow::bail!("unknown argument {other:?}; run without one, or `merge`"),
        None => {
            println!("==> prodaccess benchmark: {}", config.parameters());
            let part = std::env::var("BENCH_PART").as_deref() == Ok("1");
            (bench::run(&config).await?, part)
        }
    };
    if let Some(dir) = config.report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&config.report, serde_json::to_string_pretty(&report)?)?;
    if !part {
        println!(
            "\n==> results ({})\n{}",
            config.report.display(),
            report::table(&report)
        );
    }
    Ok(verdict(&report))
}

/// False when a phase failed, or (with `BENCH_STRICT=1`) a target was missed.
fn verdict(report: &Value) -> bool {
    let failed_phase = report
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .any(|v| v.get("error").is_some());
    let missed = report["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["met"] == serde_json::json!(false));
    let strict = std::env::var("BENCH_STRICT").as_deref() == Ok("1");
    !(failed_phase || (strict && missed))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match bench(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
