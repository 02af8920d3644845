//! The controllers, and what they share.
//!
//! Each kind has its own module shaped the same way: `observe` reads Kubernetes and AWS,
//! `plan` (pure, no client) turns desired versus observed into actions and a new status,
//! `act` carries the actions out, and the reconcile writes the status and Events. The
//! top-level reconcile of grants and routes only dispatches the finalizer's apply and cleanup.

pub mod account;
pub mod context;
pub mod grant;
pub mod group;
pub mod in_use;
pub mod peers;
pub mod route;
pub mod shared;
pub mod watch;

pub use context::{Context, Settings};
