//! The report around the figures: the machine, the build, issue 7's targets marked met or
//! missed, and the readable table printed at the end of `make bench`.

use serde_json::{json, Value};

use super::BenchConfig;

/// Cores, memory and CPU model of this machine, and its load when the run starts.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, name)| name.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "mem_total_mib": mem_kib.map(|k| k / 1024),
        "cpu_model": model,
        "load_before": loadavg(),
    })
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loads: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    json!(loads)
}

/// The commit measured, whether the tree had uncommitted changes, and the operator binary.
pub fn build(repo: &std::path::Path) -> Value {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let changed = git(&["status", "--porcelain", "--untracked-files=no"]);
    let binary = crate::operator::binary().ok();
    let profile = binary.as_ref().map(|b| {
        if b.components().any(|c| c.as_os_str() == "release") {
            "release"
        } else {
            "debug"
        }
    });
    // The tree as it was built (tests/bench/run.sh records it before building): commits made
    // while a long run goes on must not be credited with its figures.
    let built = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let commit = built("BENCH_BUILD_COMMIT").or_else(|| git(&["rev-parse", "HEAD"]));
    let uncommitted = match built("BENCH_BUILD_UNCOMMITTED") {
        Some(count) => count.parse().ok(),
        None => changed.map(|c| c.lines().count()),
    };
    json!({
        "commit": commit,
        "uncommitted_changes": uncommitted,
        "operator_binary": binary.map(|b| b.display().to_string()),
        "operator_profile": profile,
    })
}

fn target(name: &str, goal: &str, measured: Value, met: Option<bool>) -> Value {
    json!({"name": name, "target": goal, "measured": measured, "met": met})
}

/// Issue 7's targets, each met, missed, or not measured (`met: null`).
pub fn targets(report: &Value, config: &BenchConfig) -> Value {
    let num = |v: &Value| v.as_f64();
    let at_most = |v: &Value, limit: f64| num(v).map(|x| x <= limit);
    let revoke = &report["revoke_lag_ms"];
    let mass = &report["mass_expiry"];
    let approval = &report["approval_to_grant_ms"];
    let steady = &report["steady_state"];
    let poll_max = prodaccess::crd::parse_duration(&config.operator.approval_poll_max)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(30_000.0);
    let mass_met = match (
        num(&mass["budget_used_fraction"]),
        mass["exceeded_budget"].as_bool(),
    ) {
        (Some(used), Some(exceeded)) => Some(used >= 0.9 && !exceeded),
        _ => None,
    };
    let population = format!(
        "{} grants, {} routes",
        config.population.grants, config.population.routes
    );
    json!([
        target(
            "revoke_lag_ms.p99",
            "<= 1000",
            revoke["p99"].clone(),
            at_most(&revoke["p99"], 1000.0)
        ),
        target(
            "revoke_lag_ms.max",
            "<= 2000",
            revoke["max"].clone(),
            at_most(&revoke["max"], 2000.0)
        ),
        target(
            "mass_expiry",
            ">= 90% of the IAM write budget, never above it",
            json!({"rate": mass["iam_write_rate_per_s"], "budget": mass["iam_write_budget_per_s"],
                   "max_in_1s": mass["max_iam_writes_in_1s"]}),
            mass_met,
        ),
        target(
            "approval_to_grant_ms.p99",
            &format!("<= approval poll interval + 1000 = {}", poll_max + 1000.0),
            approval["p99"].clone(),
            at_most(&approval["p99"], poll_max + 1000.0),
        ),
        target(
            "steady_state.writes",
            "= 0",
            steady["writes"].clone(),
            at_most(&steady["writes"], 0.0)
        ),
        target(
            "steady_state.grant_reads_per_group_per_resync",
            "<= 1",
            steady["grant_reads_per_group_per_resync"].clone(),
            at_most(&steady["grant_reads_per_group_per_resync"], 1.0),
        ),
        target(
            "steady_state.route_reads_per_route_per_resync",
            "<= 4",
            steady["route_reads_per_route_per_resync"].clone(),
            at_most(&steady["route_reads_per_route_per_resync"], 4.0),
        ),
        target(
            "budget_exceeded",
            "false",
            report["budget_exceeded"].clone(),
            report["budget_exceeded"].as_bool().map(|b| !b),
        ),
        target(
            "rss_mib",
            &format!("<= 150 at 10,000 grants and 200 routes (measured at {population})"),
            report["rss_mib"].clone(),
            at_most(&report["rss_mib"], 150.0),
        ),
    ])
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The readable table of the figures and targets.
pub fn table(report: &Value) -> String {
    let mut out = String::new();
    let mut row = |name: &str, value: String| out.push_str(&format!("  {name:<44} {value}\n"));
    let r = &report["revoke_lag_ms"];
    row(
        "revoke_lag_ms p50 / p99 / max",
        format!(
            "{} / {} / {}",
            show(&r["p50"]),
            show(&r["p99"]),
            show(&r["max"])
        ),
    );
    let a = &report["approval_to_grant_ms"];
    row(
        "approval_to_grant_ms p50 / p99",
        format!("{} / {}", show(&a["p50"]), show(&a["p99"])),
    );
    let m = &report["mass_expiry"];
    row(
        "mass_expiry seconds_to_all_removed",
        show(&m["seconds_to_all_removed"]),
    );
    row(
        "mass_expiry iam writes/s (budget)",
        format!(
            "{} ({})",
            show(&m["iam_write_rate_per_s"]),
            show(&m["iam_write_budget_per_s"])
        ),
    );
    let s = &report["steady_state"];
    row("steady_state writes", show(&s["writes"]));
    row(
        "steady_state grant reads/group/resync",
        show(&s["grant_reads_per_group_per_resync"]),
    );
    row(
        "steady_state route reads/route/resync",
        show(&s["route_reads_per_route_per_resync"]),
    );
    row("steady_state seconds", show(&s["seconds"]));
    let c = &report["cold_start"];
    row(
        "cold_start seconds (calls)",
        format!("{} ({})", show(&c["seconds"]), show(&c["calls"])),
    );
    row("rss_mib", show(&report["rss_mib"]));
    row("cpu_seconds", show(&report["cpu_seconds"]));
    row("budget_exceeded", show(&report["budget_exceeded"]));
    out.push_str("\n  targets (issue 7)\n");
    for t in report["targets"].as_array().into_iter().flatten() {
        let verdict = match t["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        out.push_str(&format!(
            "  {:<12} {:<46} {} (target {})\n",
            verdict,
            show(&t["name"]),
            show(&t["measured"]),
            show(&t["target"])
        ));
    }
    out
}
