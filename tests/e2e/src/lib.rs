//! Test support for prodaccess: the local platform (a real kube-apiserver and the AWS
//! emulator), per-test namespaces and AWS accounts, the operator run as its real binary, and
//! the seed scenario of the original article shared by the end-to-end tests and `make demo`.
//!
//! Any test runs with plain `cargo test NAME`: [`Platform::get`] starts the platform through
//! `tests/platform/up.sh` when it is not running. With `PRODACCESS_USE_EXISTING=1`, the tests
//! use `KUBECONFIG` and `PRODACCESS_AWS_ENDPOINT` as given instead (kind, k3d or EKS with an
//! emulator).

pub mod aws;
pub mod bench;
pub mod grants;
pub mod invariants;
pub mod network;
pub mod operator;
pub mod platform;
pub mod routes;
pub mod scenario;
pub mod seed;

pub use operator::Operator;
pub use platform::{Platform, TestEnv};

/// Result type of test helpers: failures carry a message that says what was expected.
pub type Result<T> = anyhow::Result<T>;
