//! prodaccess: a Kubernetes operator for approval-gated, time-bound production AWS access and
//! the private network path into production.
//!
//! The crate is laid out the way a reconcile flows: [`crd`] holds the API types, [`aws`] builds
//! SDK clients per account and sorts their errors, the controllers under [`controller`] observe,
//! plan (pure), act and report, and [`cli`] wires it all into the `prodaccess-operator` binary
//! with [`health`], [`leader`], [`metrics`] and [`telemetry`]; [`plugin`] is the
//! `kubectl prodaccess` command line for the people who ask for access.

pub mod aws;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod plugin;
pub mod telemetry;
