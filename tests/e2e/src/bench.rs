//! `make bench`: where prodaccess stands on reaction time, AWS API cost and footprint, measured
//! against the local platform with the operator's real binary.
//!
//! Four phases, each in its own namespace with its own operator process: `revoke` (grants with
//! staggered expiries), `approval` (change requests approved over time), `mass` (grants expiring
//! in the same instant) and `population` (a fresh operator's cold start on many grants, groups
//! and routes, then a steady-state window, its memory and CPU). Every AWS figure comes from the
//! emulator's call log, never from the operator's own account of itself; sizes and settings come
//! from `BENCH_*` variables and are recorded in the report with the machine and the commit.

pub mod approval;
pub mod calllog;
pub mod mass;
pub mod population;
pub mod process;
pub mod report;
pub mod revoke;
pub mod stats;
pub mod world;

use anyhow::Context as _;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;

use approval::ApprovalConfig;
use calllog::CallLog;
use mass::MassConfig;
use population::PopulationConfig;
use process::OperatorSettings;
use revoke::RevokeConfig;

/// Budget of the operators that build populations: generous, so that building is limited by
/// the emulator rather than by the budget under test.
pub const SETUP_BUDGET: &str = "iam:read=200/200,iam:write=100/100,ssm:read=100/100,\
    ssm:write=50/50,ec2:read=100/200,ec2:write=50/100,elasticloadbalancing:read=100/200,\
    elasticloadbalancing:write=50/100,route53:read=50/100,route53:write=20/40,acm:read=50/100";

/// Budget of the mass-expiry operator in the default run: IAM at the operator's own 1:2
/// write:read ratio, two and a half times its defaults, so that the phase ends in minutes.
pub const MASS_BUDGET: &str = "iam:write=25/25,iam:read=50/50";

/// Everything one run measures with, from `BENCH_*` variables.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub phases: Vec<String>,
    pub operator: OperatorSettings,
    pub revoke: RevokeConfig,
    pub approval: ApprovalConfig,
    pub mass: MassConfig,
    pub population: PopulationConfig,
    pub report: PathBuf,
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn number(name: &str, default: u64) -> crate::Result<u64> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{name}={text:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

fn flag(name: &str, default: bool) -> crate::Result<bool> {
    match std::env::var(name) {
        Ok(text) => match text.trim() {
            "1" => Ok(true),
            "0" => Ok(false),
            _ => anyhow::bail!("{name}={text:?} must be 0 or 1"),
        },
        Err(_) => Ok(default),
    }
}

impl BenchConfig {
    /// Reads the configuration; the defaults finish in about ten minutes on two cores.
    pub fn from_env(repo: &std::path::Path) -> crate::Result<Self> {
        let operator = OperatorSettings {
            grant_resync: var("BENCH_GRANT_RESYNC", "60s"),
            route_resync: var("BENCH_ROUTE_RESYNC", "60s"),
            approval_poll_min: var("BENCH_APPROVAL_POLL_MIN", "2s"),
            approval_poll_max: var("BENCH_APPROVAL_POLL_MAX", "30s"),
            budget: var("BENCH_BUDGET", ""),
        };
        let setup_budget = var("BENCH_SETUP_BUDGET", SETUP_BUDGET);
        let grants = number("BENCH_GRANTS", 1000)? as usize;
        let routes = number("BENCH_ROUTES", 10)? as usize;
        let cold_default = 300 + grants as u64 / 5 + 20 * routes as u64;
        Ok(Self {
            phases: var("BENCH_PHASES", "revoke,approval,mass,population")
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            revoke: RevokeConfig {
                grants: number("BENCH_REVOKE_GRANTS", 100)? as usize,
                stagger: Duration::from_millis(number("BENCH_REVOKE_STAGGER_MS", 250)?),
                duration_secs: number("BENCH_REVOKE_DURATION_S", 20)?,
            },
            approval: ApprovalConfig {
                grants: number("BENCH_APPROVAL_GRANTS", 20)? as usize,
                spread: Duration::from_secs(number("BENCH_APPROVAL_SPREAD_S", 60)?),
            },
            mass: MassConfig {
                grants: number("BENCH_MASS_GRANTS", 1000)? as usize,
                groups: number("BENCH_MASS_GROUPS", 10)?.max(1) as usize,
                budget: var("BENCH_MASS_BUDGET", MASS_BUDGET),
                setup_budget: setup_budget.clone(),
            },
            population: PopulationConfig {
                grants,
                groups: number("BENCH_GROUPS", 10)?.max(1) as usize,
                routes,
                shared_zone: flag("BENCH_SHARED_ZONE", true)?,
                steady: Duration::from_secs(number("BENCH_STEADY_SECONDS", 120)?),
                setup_budget,
                cold_timeout: Duration::from_secs(number("BENCH_COLD_TIMEOUT_S", cold_default)?),
            },
            report: std::env::var("BENCH_REPORT")
                .map(PathBuf::from)
                .unwrap_or_else(|_| repo.join("target/bench/report.json")),
            operator,
        })
    }

    fn wants(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }

    /// The parameters as the report records them.
    pub fn parameters(&self) -> Value {
        let budget = |text: &str| {
            if text.is_empty() {
                "operator defaults".to_string()
            } else {
                text.to_string()
            }
        };
        json!({
            "BENCH_GRANTS": self.population.grants,
            "BENCH_GROUPS": self.population.groups,
            "BENCH_ROUTES": self.population.routes,
            "BENCH_SHARED_ZONE": u8::from(self.population.shared_zone),
            "BENCH_STEADY_SECONDS": self.population.steady.as_secs(),
            "phases": self.phases,
            "grant_resync": self.operator.grant_resync,
            "route_resync": self.operator.route_resync,
            "approval_poll_min": self.operator.approval_poll_min,
            "approval_poll_max": self.operator.approval_poll_max,
            "budget_under_test": budget(&self.operator.budget),
            "budget_under_test_iam": effective(&self.operator.budget),
            "setup_budget": self.population.setup_budget,
            "revoke": {"grants": self.revoke.grants,
                       "stagger_ms": self.revoke.stagger.as_millis() as u64,
                       "grant_duration_s": self.revoke.duration_secs},
            "approval": {"grants": self.approval.grants,
                         "spread_s": self.approval.spread.as_secs()},
            "mass": {"grants": self.mass.grants, "groups": self.mass.groups,
                     "budget": budget(&self.mass.budget),
                     "budget_iam": effective(&self.mass.budget)},
            "cold_timeout_s": self.population.cold_timeout.as_secs(),
        })
    }
}

/// The IAM limits a budget text gives, after the operator's defaults.
fn effective(text: &str) -> Value {
    use prodaccess::aws::{BudgetConfig, CallKind};
    let Ok(config) = BudgetConfig::default().with_overrides(text) else {
        return Value::Null;
    };
    let show = |kind| {
        config
            .limit("iam", kind)
            .map(|l| format!("{}/s burst {}", l.rate, l.burst))
    };
    json!({"read": show(CallKind::Read), "write": show(CallKind::Write)})
}

/// Runs the configured phases and returns the report. A phase that fails is recorded with its
/// error and the others still run.
pub async fn run(config: &BenchConfig) -> crate::Result<Value> {
    let platform = crate::Platform::get()?;
    let started = process::now();
    let started_at = jiff::Timestamp::now().to_string();
    let log = CallLog::start(&platform.aws_endpoint).await?;
    let mut out = Map::new();
    let mut budgets = Map::new();
    let machine = report::machine();
    if config.wants("revoke") {
        let result = revoke::run(&config.revoke, &config.operator, &log).await;
        put(&mut out, &mut budgets, "revoke_lag_ms", "revoke", result);
    }
    if config.wants("approval") {
        let result = approval::run(&config.approval, &config.operator, &log).await;
        put(
            &mut out,
            &mut budgets,
            "approval_to_grant_ms",
            "approval",
            result,
        );
    }
    if config.wants("mass") {
        let result = mass::run(&config.mass, &config.operator, &log).await;
        put(&mut out, &mut budgets, "mass_expiry", "mass", result);
    }
    if config.wants("population") {
        let result = population::run(&config.population, &config.operator, &log).await;
        population_figures(&mut out, &mut budgets, result);
    }
    let run = json!({
        "phases": config.phases,
        "started_at": started_at,
        "wall_seconds": stats::round(process::now() - started, 1),
        "load_before": machine["load_before"],
        "load_after": report::loadavg(),
        "call_log_lost": log.lost(),
    });
    let report = Report {
        figures: out,
        budgets,
        machine,
        build: report::build(&platform.repo),
        runs: vec![run],
    };
    Ok(report.finish(config))
}

/// Keys of the figures the phases contribute to the report.
const FIGURES: &[&str] = &[
    "revoke_lag_ms",
    "approval_to_grant_ms",
    "mass_expiry",
    "steady_state",
    "cold_start",
    "rss_mib",
    "cpu_seconds",
    "population",
];

/// The parts of a report before the verdicts.
struct Report {
    figures: Map<String, Value>,
    budgets: Map<String, Value>,
    machine: Value,
    build: Value,
    runs: Vec<Value>,
}

impl Report {
    /// The report with the budget verdict, the parameters and the targets.
    fn finish(self, config: &BenchConfig) -> Value {
        let exceeded = self
            .budgets
            .values()
            .any(|f| calllog::any_exceeded(f.as_array().map_or(&[], |v| v)));
        let lost: u64 = self
            .runs
            .iter()
            .filter_map(|r| r["call_log_lost"].as_u64())
            .sum();
        let wall: f64 = self
            .runs
            .iter()
            .filter_map(|r| r["wall_seconds"].as_f64())
            .sum();
        let mut out = self.figures;
        out.insert("budget_exceeded".into(), json!(exceeded));
        out.insert("budget_checks".into(), Value::Object(self.budgets));
        out.insert("call_log_lost".into(), json!(lost));
        out.insert("parameters".into(), config.parameters());
        out.insert("machine".into(), self.machine);
        out.insert("build".into(), self.build);
        out.insert("runs".into(), json!(self.runs));
        out.insert("wall_seconds".into(), json!(stats::round(wall, 1)));
        let mut report = Value::Object(out);
        report["targets"] = report::targets(&report, config);
        report
    }
}

/// Combines the reports of phases run one at a time, each on a fresh platform (as `make bench`
/// runs them), into one report.
pub fn merge(parts: &[Value], config: &BenchConfig) -> Value {
    let mut figures = Map::new();
    let mut budgets = Map::new();
    let mut runs = Vec::new();
    for part in parts {
        for key in FIGURES {
            if let Some(value) = part.get(*key).filter(|v| !v.is_null()) {
                figures.insert(key.to_string(), value.clone());
            }
        }
        if let Some(checks) = part["budget_checks"].as_object() {
            budgets.extend(checks.clone());
        }
        runs.extend(part["runs"].as_array().cloned().unwrap_or_default());
    }
    let first = parts.first().cloned().unwrap_or_default();
    let report = Report {
        figures,
        budgets,
        machine: first["machine"].clone(),
        build: first["build"].clone(),
        runs,
    };
    report.finish(config)
}

/// Records one phase's figures under `key`, and its budget findings apart.
fn put(
    out: &mut Map<String, Value>,
    budgets: &mut Map<String, Value>,
    key: &str,
    phase: &str,
    result: crate::Result<Value>,
) {
    match result {
        Ok(mut value) => {
            if let Some(findings) = value.as_object_mut().and_then(|v| v.remove("budget")) {
                budgets.insert(phase.into(), findings);
            }
            out.insert(key.into(), value);
        }
        Err(err) => {
            println!("!!! phase {phase} failed: {err:#}");
            out.insert(key.into(), json!({"error": format!("{err:#}")}));
        }
    }
}

/// Spreads the population phase's figures over their report keys.
fn population_figures(
    out: &mut Map<String, Value>,
    budgets: &mut Map<String, Value>,
    result: crate::Result<Value>,
) {
    let mut value = match result {
        Ok(value) => value,
        Err(err) => {
            println!("!!! phase population failed: {err:#}");
            let error = json!({"error": format!("{err:#}")});
            for key in ["steady_state", "cold_start", "rss_mib", "cpu_seconds"] {
                out.insert(key.into(), error.clone());
            }
            return;
        }
    };
    let Some(map) = value.as_object_mut() else {
        return;
    };
    if let Some(findings) = map.remove("budget") {
        budgets.insert("population".into(), findings);
    }
    for key in ["steady_state", "cold_start", "rss_mib", "cpu_seconds"] {
        out.insert(key.into(), map.remove(key).unwrap_or(Value::Null));
    }
    out.insert("population".into(), Value::Object(map.clone()));
}
