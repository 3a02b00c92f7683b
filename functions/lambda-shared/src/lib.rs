//! What the three Lambda functions share: configuration read once at start-up, the AWS-backed
//! ports, the handlers (thin adapters over `sso_fanout_core::pipeline`), error diagnostics with
//! fixed `error_type`s, and a one-shot mode for running a function binary outside Lambda.

pub mod config;
pub mod handlers;
pub mod runtime;

pub use config::LambdaConfig;
pub use runtime::{init_logging, serve};
