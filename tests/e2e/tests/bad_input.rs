//! `bad_input_corpus`: every manifest under `tests/bad-input/` against the real API server and
//! a running operator. Each must be refused at admission with the message the index names, or
//! be reconciled to the named condition reason; the operator must stay up, make no AWS write
//! for any of them, still grant afterwards, and let every one of them be deleted.

use anyhow::{bail, Context as _};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use prodaccess_e2e::invariants::CallLog;
use prodaccess_e2e::platform::eventually;
use prodaccess_e2e::{aws, Operator, TestEnv};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// What one manifest must lead to.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
enum Expect {
    /// Refused by the API server with a message containing this text.
    Admission(String),
    /// Admitted, then given this condition with status False by the operator.
    Condition {
        #[serde(rename = "type")]
        type_: String,
        reason: String,
    },
}

/// One manifest of the corpus: supporting documents first, the object under test last.
struct Case {
    file: String,
    docs: Vec<Value>,
    expect: Expect,
}

impl Case {
    fn subject(&self) -> Option<(String, String)> {
        let doc = self.docs.last()?;
        let kind = doc["kind"].as_str()?.to_string();
        let name = doc["metadata"]["name"].as_str()?.to_string();
        Some((kind, name))
    }
}

/// Fills `${VAR}` placeholders in every string of a parsed document, so that values keep the
/// type the manifest gave them.
fn substitute(value: &mut Value, vars: &BTreeMap<String, String>) {
    match value {
        Value::String(text) => {
            for (key, replacement) in vars {
                *text = text.replace(&format!("${{{key}}}"), replacement);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, vars)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, vars)),
        _ => {}
    }
}

fn documents(path: &Path, vars: &BTreeMap<String, String>) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let yaml: serde_yaml::Value = serde::Deserialize::deserialize(doc)?;
        let mut value = serde_json::to_value(yaml)?;
        if value.is_null() {
            continue;
        }
        substitute(&mut value, vars);
        docs.push(value);
    }
    Ok(docs)
}

fn corpus(dir: &Path, vars: &BTreeMap<String, String>) -> anyhow::Result<Vec<Case>> {
    let index = std::fs::read_to_string(dir.join("expected.yaml"))?;
    let index: serde_yaml::Value = serde_yaml::from_str(&index)?;
    let index: BTreeMap<String, Expect> = serde_json::from_value(serde_json::to_value(index)?)?;
    let mut listed: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml") && n != "expected.yaml" && n != "baseline.yaml")
        .collect();
    listed.sort();
    let unindexed: Vec<&String> = listed.iter().filter(|f| !index.contains_key(*f)).collect();
    anyhow::ensure!(
        unindexed.is_empty(),
        "manifests without an expected outcome: {unindexed:?}"
    );
    let mut cases = Vec::new();
    for (file, expect) in index {
        let docs = documents(&dir.join(&file), vars)?;
        anyhow::ensure!(!docs.is_empty(), "{file} has no document");
        cases.push(Case { file, docs, expect });
    }
    Ok(cases)
}

fn resource(kind: &str) -> anyhow::Result<(ApiResource, bool)> {
    let (plural, namespaced) = match kind {
        "AwsAccount" => ("awsaccounts", false),
        "AccessGroup" => ("accessgroups", false),
        "ProductionAccessGrant" => ("productionaccessgrants", true),
        "PrivateLinkRoute" => ("privatelinkroutes", true),
        other => bail!("unknown kind {other}"),
    };
    let gvk = GroupVersionKind::gvk("prodaccess.io", "v1alpha1", kind);
    Ok((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced))
}

fn api(env: &TestEnv, kind: &str) -> anyhow::Result<Api<DynamicObject>> {
    let (resource, namespaced) = resource(kind)?;
    Ok(if namespaced {
        Api::namespaced_with(env.client.clone(), &env.namespace, &resource)
    } else {
        Api::all_with(env.client.clone(), &resource)
    })
}

/// `(status, reason)` of a condition of an object, if it has one yet.
async fn condition(
    env: &TestEnv,
    kind: &str,
    name: &str,
    type_: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let Some(object) = api(env, kind)?.get_opt(name).await? else {
        return Ok(None);
    };
    let conditions = object.data["status"]["conditions"].as_array().cloned();
    Ok(conditions.unwrap_or_default().iter().find_map(|c| {
        (c["type"] == type_).then(|| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_string();
            (text("status"), text("reason"))
        })
    }))
}

/// What the baseline's objects must reach before the corpus is applied.
fn baseline_states(suffix: &str) -> Vec<(&'static str, String, &'static str, &'static str)> {
    let mut states = Vec::new();
    for name in ["jump", "production", "restricted"] {
        states.push(("AwsAccount", format!("{name}{suffix}"), "True", ""));
    }
    states.push((
        "AwsAccount",
        format!("broken{suffix}"),
        "False",
        "AccountMismatch",
    ));
    let ready = [
        "access",
        "templated",
        "untemplated",
        "automation",
        "elsewhere",
        "restricted",
    ];
    for name in ready {
        states.push(("AccessGroup", format!("{name}{suffix}"), "True", ""));
    }
    states.push((
        "AccessGroup",
        format!("missing-iam{suffix}"),
        "False",
        "GroupNotFound",
    ));
    states.push((
        "AccessGroup",
        format!("on-broken{suffix}"),
        "False",
        "AccountNotReady",
    ));
    states
}

async fn wait_baseline(env: &TestEnv, suffix: &str) -> anyhow::Result<()> {
    let states = baseline_states(suffix);
    eventually("the baseline objects", Duration::from_secs(90), || async {
        let mut pending = Vec::new();
        for (kind, name, status, reason) in &states {
            let seen = condition(env, kind, name, "Ready").await?;
            let ok = seen
                .as_ref()
                .is_some_and(|(s, r)| s == status && (reason.is_empty() || r == reason));
            if !ok {
                pending.push(format!("{kind}/{name} is {seen:?}"));
            }
        }
        if pending.is_empty() {
            return Ok(Some(()));
        }
        anyhow::bail!("not yet: {}", pending.join("; "))
    })
    .await
}

/// Waits until the operator has made no AWS write for `quiet`, so later writes are new.
async fn settle(log: &CallLog, quiet: Duration) -> anyhow::Result<f64> {
    eventually("AWS writes to stop", Duration::from_secs(60), || async {
        log.poll().await?;
        let now = prodaccess_e2e::invariants::epoch(jiff::Timestamp::now());
        let last = log
            .calls()
            .iter()
            .filter(|c| c.by_operator() && c.is_write())
            .map(|c| c.time)
            .fold(0.0, f64::max);
        Ok((now - last > quiet.as_secs_f64()).then_some(now))
    })
    .await
}

/// Applies one case; returns a failure description, if any.
async fn apply_case(env: &TestEnv, case: &Case) -> Option<String> {
    let (support, subject) = case.docs.split_at(case.docs.len() - 1);
    for doc in support {
        if let Err(err) = env.apply_value(&mut doc.clone()).await {
            return Some(format!(
                "{}: a supporting document was refused: {err:#}",
                case.file
            ));
        }
    }
    let result = env.apply_value(&mut subject[0].clone()).await;
    match (&case.expect, result) {
        (Expect::Admission(text), Err(err)) => {
            let message = format!("{err:#}");
            (!message.contains(text.as_str()))
                .then(|| format!("{}: refused, but not with {text:?}: {message}", case.file))
        }
        (Expect::Admission(text), Ok(())) => Some(format!(
            "{}: admitted, but the API server should refuse it with {text:?}",
            case.file
        )),
        (Expect::Condition { .. }, Err(err)) => {
            Some(format!("{}: refused at admission: {err:#}", case.file))
        }
        (Expect::Condition { .. }, Ok(())) => None,
    }
}

/// Waits for every admitted case's condition; returns the cases that never reached it.
async fn wait_conditions(env: &TestEnv, cases: &[&Case]) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut missing = Vec::new();
        for case in cases {
            let (Expect::Condition { type_, reason }, Some((kind, name))) =
                (&case.expect, case.subject())
            else {
                continue;
            };
            let seen = condition(env, &kind, &name, type_).await.ok().flatten();
            let ok = seen
                .as_ref()
                .is_some_and(|(s, r)| s == "False" && r == reason);
            if !ok {
                missing.push(format!(
                    "{}: {kind}/{name} should have {type_}=False reason {reason}, has {seen:?}",
                    case.file
                ));
            }
        }
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Deletes every object of the cases and waits until all are gone (no stuck finalizer).
async fn delete_all(env: &TestEnv, objects: &[(String, String)]) -> Vec<String> {
    for (kind, name) in objects {
        if let Ok(api) = api(env, kind) {
            let _ = api.delete(name, &DeleteParams::default()).await;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let mut left = Vec::new();
        for (kind, name) in objects {
            let exists = match api(env, kind) {
                Ok(api) => api.get_opt(name).await.map(|o| o.is_some()).unwrap_or(true),
                Err(_) => false,
            };
            if exists {
                left.push(format!("{kind}/{name} was not deleted within 45 s"));
            }
        }
        if left.is_empty() || tokio::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// After the corpus, a valid grant must still be granted: the controllers are alive.
async fn still_grants(env: &TestEnv, suffix: &str) -> anyhow::Result<()> {
    let grant = serde_json::json!({
        "apiVersion": "prodaccess.io/v1alpha1",
        "kind": "ProductionAccessGrant",
        "metadata": {"name": "still-works"},
        "spec": {
            "accessGroup": format!("access{suffix}"),
            "user": "alice",
            "duration": "1m",
            "reason": "The operator still grants after the bad input",
        },
    });
    env.apply_value(&mut grant.clone()).await?;
    eventually(
        "a valid grant to become Active",
        Duration::from_secs(30),
        || async {
            let seen = condition(env, "ProductionAccessGrant", "still-works", "Ready").await?;
            Ok(seen
                .is_some_and(|(s, r)| s == "True" && r == "Active")
                .then_some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_corpus() -> anyhow::Result<()> {
    let env = TestEnv::new("bad-input").await?;
    let endpoint = env.platform.aws_endpoint.clone();
    let (jump_id, prod_id) = (TestEnv::account_id(), TestEnv::account_id());
    let jump = aws::admin(&endpoint, &jump_id).await?;
    aws_sdk_iam::Client::new(&jump)
        .create_user()
        .user_name("alice")
        .send()
        .await?;
    let log = CallLog::new(&endpoint, &[jump_id.clone(), prod_id.clone()]);
    let poller = log.spawn_poller(Duration::from_secs(1));
    let suffix = format!("-{}", env.id);
    let vars: BTreeMap<String, String> = [
        ("SUFFIX", suffix.clone()),
        ("NAMESPACE", env.namespace.clone()),
        ("JUMP_ACCOUNT_ID", jump_id.clone()),
        ("PROD_ACCOUNT_ID", prod_id.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let dir = env.platform.repo.join("tests/bad-input");
    let cases = corpus(&dir, &vars)?;
    anyhow::ensure!(cases.len() >= 60, "only {} manifests", cases.len());

    let mut operator = Operator::start(&env, "operator", &[])?;
    operator.wait_ready().await?;
    let baseline = documents(&dir.join("baseline.yaml"), &vars)?;
    for doc in &baseline {
        env.apply_value(&mut doc.clone()).await?;
    }
    wait_baseline(&env, &suffix).await?;
    let mark = settle(&log, Duration::from_secs(3)).await?;

    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for case in &cases {
        failures.extend(apply_case(&env, case).await);
    }
    let admitted: Vec<&Case> = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Condition { .. }))
        .collect();
    failures.extend(wait_conditions(&env, &admitted).await);
    let converged = started.elapsed();

    // One more resync of everything before the write check.
    tokio::time::sleep(Duration::from_secs(6)).await;
    log.poll().await?;
    let writes: Vec<String> = log
        .calls()
        .iter()
        .filter(|c| c.by_operator() && c.is_write() && c.time > mark)
        .map(|c| format!("{}:{} in {}", c.service, c.operation, c.account))
        .collect();
    if !writes.is_empty() {
        failures.push(format!("AWS writes for invalid specs: {writes:?}"));
    }
    if !operator.running() {
        failures.push(format!("the operator exited:\n{}", operator.log_tail(40)));
    }
    let log_text = std::fs::read_to_string(&operator.log).unwrap_or_default();
    if log_text.contains("panicked") {
        failures.push("the operator's log shows a panic".to_string());
    }
    if let Err(err) = still_grants(&env, &suffix).await {
        failures.push(format!("no valid grant after the corpus: {err:#}"));
    }

    let mut objects: Vec<(String, String)> = admitted.iter().filter_map(|c| c.subject()).collect();
    objects.push(("ProductionAccessGrant".into(), "still-works".into()));
    failures.extend(delete_all(&env, &objects).await);
    let baseline_objects: Vec<(String, String)> = baseline
        .iter()
        .filter_map(|d| {
            Some((
                d["kind"].as_str()?.into(),
                d["metadata"]["name"].as_str()?.into(),
            ))
        })
        .collect();
    delete_all(&env, &baseline_objects).await;
    poller.abort();
    eprintln!(
        "bad_input_corpus: {} manifests ({} refused at admission, {} reconciled to a reason) in \
         {:.1}s; AWS writes after the baseline: {}",
        cases.len(),
        cases.len() - admitted.len(),
        admitted.len(),
        converged.as_secs_f64(),
        writes.len()
    );
    env.cleanup().await;
    if !failures.is_empty() {
        bail!("{} failures:\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}
