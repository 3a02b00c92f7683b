//! sso-fanout's domain: everything that decides and executes, with no Lambda and no AWS SDK.
//!
//! request -> (targeting, tiers) -> plan -> engine (per batch) -> report, over the `ports`
//! traits, which the AWS adapters (`sso-fanout-aws`), the simulator (`sso-fanout-sim`) and the
//! stores implement (in-memory here; DynamoDB in `sso-fanout-aws`; the CLI's redb file in
//! `sso-fanout-cli`). Nothing here needs a paused clock, a latency distribution or a database.

pub mod clock;
pub mod contract;
pub mod desired;
pub mod document;
pub mod engine;
pub mod error;
pub mod ids;
pub mod model;
pub mod pacing;
pub mod quota;
pub mod pipeline;
pub mod plan;
pub mod planner;
pub mod ports;
pub mod report;
pub mod request;
pub mod retry;
pub mod rules;
pub mod store;
pub mod targeting;
pub mod tiers;

pub use error::{FanoutError, Result};
