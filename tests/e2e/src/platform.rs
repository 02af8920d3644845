//! Finding or starting the platform, and giving every test its own namespace and names.

use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// Where the platform is.
#[derive(Clone, Debug)]
pub struct Platform {
    pub repo: PathBuf,
    pub kubeconfig: PathBuf,
    pub aws_endpoint: String,
    pub log_dir: PathBuf,
}

static PLATFORM: OnceLock<std::result::Result<Platform, String>> = OnceLock::new();

impl Platform {
    /// The platform, started once per test process if needed.
    pub fn get() -> crate::Result<Platform> {
        PLATFORM
            .get_or_init(|| Self::discover().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)
    }

    fn discover() -> crate::Result<Platform> {
        // Cargo sets the variable again when it runs the test, and that is the clone being
        // tested: test binaries built in another clone that shares the target directory
        // carry that clone's path in the compile-time value.
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let repo = PathBuf::from(manifest_dir).join("../..").canonicalize()?;
        if std::env::var("PRODACCESS_USE_EXISTING").as_deref() == Ok("1") {
            let kubeconfig = std::env::var("KUBECONFIG").context("KUBECONFIG is not set")?;
            let endpoint = std::env::var("PRODACCESS_AWS_ENDPOINT")
                .context("PRODACCESS_AWS_ENDPOINT is not set")?;
            let log_dir = std::env::temp_dir().join("prodaccess-e2e-logs");
            std::fs::create_dir_all(&log_dir)?;
            return Ok(Platform {
                repo,
                kubeconfig: kubeconfig.into(),
                aws_endpoint: endpoint,
                log_dir,
            });
        }
        let dir = std::env::var("PRODACCESS_PLATFORM_DIR")
            .map(PathBuf::from)
            .unwrap_or(repo.join(".platform"));
        let up = std::process::Command::new(repo.join("tests/platform/up.sh"))
            .env("PRODACCESS_PLATFORM_DIR", &dir)
            .output()
            .context("cannot run tests/platform/up.sh")?;
        if !up.status.success() {
            bail!(
                "tests/platform/up.sh failed (run `make platform` once to install the platform):\n{}{}",
                String::from_utf8_lossy(&up.stdout),
                String::from_utf8_lossy(&up.stderr)
            );
        }
        let env = read_env_file(&dir.join("platform.env"))?;
        let get = |key: &str| {
            env.get(key)
                .cloned()
                .with_context(|| format!("{key} missing in platform.env"))
        };
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        Ok(Platform {
            repo,
            kubeconfig: get("KUBECONFIG")?.into(),
            aws_endpoint: get("PRODACCESS_AWS_ENDPOINT")?,
            log_dir,
        })
    }

    /// A Kubernetes client for the platform's API server.
    pub async fn client(&self) -> crate::Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }
}

fn read_env_file(path: &std::path::Path) -> crate::Result<HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect())
}

/// One test's world: its namespace, a label that scopes the operator to its objects, and
/// random AWS account IDs that the emulator keeps apart from every other test's.
pub struct TestEnv {
    pub platform: Platform,
    pub client: Client,
    pub namespace: String,
    /// Value of the `prodaccess.io/test` label on every object of this test.
    pub id: String,
}

/// Label the operator under test selects on.
pub const TEST_LABEL: &str = "prodaccess.io/test";

impl TestEnv {
    /// Creates the namespace and installs the CRDs (server-side apply, so it is idempotent).
    pub async fn new(test: &str) -> crate::Result<TestEnv> {
        let platform = Platform::get()?;
        let client = platform.client().await?;
        install_crds(&client).await?;
        let id = format!(
            "{}-{:06x}",
            test.replace('_', "-"),
            rand::random::<u32>() & 0xff_ffff
        );
        let mut namespace = format!("t-{id}");
        namespace.truncate(63);
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(TestEnv {
            platform,
            client,
            namespace,
            id,
        })
    }

    /// A fresh random 12-digit AWS account ID.
    pub fn account_id() -> String {
        format!(
            "{:012}",
            100_000_000_000u64 + rand::random::<u64>() % 800_000_000_000
        )
    }

    /// Applies a manifest (YAML, one or more documents) into this test's namespace, labelled
    /// for this test.
    pub async fn apply_yaml(&self, yaml: &str) -> crate::Result<()> {
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let yaml: serde_yaml::Value = serde::Deserialize::deserialize(doc)?;
            let mut value = serde_json::to_value(yaml)?;
            if value.is_null() {
                continue;
            }
            self.apply_value(&mut value).await?;
        }
        Ok(())
    }

    /// Applies one object given as JSON.
    pub async fn apply_value(&self, value: &mut serde_json::Value) -> crate::Result<()> {
        let kind = value["kind"]
            .as_str()
            .context("object without kind")?
            .to_string();
        let name = value["metadata"]["name"]
            .as_str()
            .context("object without name")?
            .to_string();
        value["metadata"]["labels"][TEST_LABEL] = serde_json::Value::String(self.id.clone());
        let namespaced = matches!(kind.as_str(), "ProductionAccessGrant" | "PrivateLinkRoute");
        if namespaced {
            value["metadata"]["namespace"] = serde_json::Value::String(self.namespace.clone());
        }
        let api = self.dynamic_api(&kind, namespaced)?;
        let params = PatchParams::apply("prodaccess-e2e").force();
        api.patch(&name, &params, &Patch::Apply(&*value))
            .await
            .with_context(|| format!("apply {kind}/{name}"))?;
        Ok(())
    }

    fn dynamic_api(
        &self,
        kind: &str,
        namespaced: bool,
    ) -> crate::Result<Api<kube::api::DynamicObject>> {
        let plural = match kind {
            "AwsAccount" => "awsaccounts",
            "AccessGroup" => "accessgroups",
            "ProductionAccessGrant" => "productionaccessgrants",
            "PrivateLinkRoute" => "privatelinkroutes",
            other => bail!("unknown kind {other}"),
        };
        let gvk = kube::api::GroupVersionKind::gvk("prodaccess.io", "v1alpha1", kind);
        let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
        Ok(if namespaced {
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        })
    }

    /// Typed API of a namespaced kind in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Deletes every `K` of this test's namespace and waits for them to be gone, `what` naming
    /// the wait if it times out. The operator must be running: it releases their finalizers.
    pub async fn delete_all<K>(&self, what: &str, timeout: Duration) -> crate::Result<()>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let api: Api<K> = self.api();
        api.delete_collection(&DeleteParams::default(), &Default::default())
            .await?;
        eventually(what, timeout, || async {
            let left = api.list(&Default::default()).await?;
            Ok(left.items.is_empty().then_some(()))
        })
        .await
    }

    /// Deletes the cluster-scoped `kind` object `name` where it exists. Failures are ignored:
    /// this only tidies the shared API server after a test.
    pub async fn delete_cluster_object(&self, kind: &str, name: &str) {
        if let Ok(api) = self.dynamic_api(kind, false) {
            let _ = api.delete(name, &DeleteParams::default()).await;
        }
    }

    /// Deletes the namespace (grants and routes go with it once the operator has cleaned up).
    pub async fn cleanup(&self) {
        let api = Api::<Namespace>::all(self.client.clone());
        let _ = api.delete(&self.namespace, &DeleteParams::default()).await;
    }
}

/// Installs or updates the CRDs generated by the operator's own code.
pub async fn install_crds(client: &Client) -> crate::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("prodaccess-e2e").force();
    for crd in prodaccess::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("install CRD {name}"))?;
    }
    for crd in prodaccess::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let established = |c: &CustomResourceDefinition| {
            c.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        };
        let mut tries = 0;
        while !established(&api.get(&name).await?) {
            tries += 1;
            if tries > 100 {
                bail!("CRD {name} never became established");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if tokio::time::Instant::now() > deadline {
            let detail = last_error
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            bail!("timed out after {timeout:?} waiting for {what}{detail}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
