//! AWS adapters behind sso-fanout's domain traits:
//!
//! - [`AwsOrgDirectory`] (`OrgDirectory`): Organizations, OU tree walk + tags.
//! - [`AwsIdentityCenter`] (`Directory`, `AssignmentOps`): sso-admin + Identity Store.
//! - [`DynamoStore`] (`AccountCache`, `RunLog`, `LatencyHistory`): one DynamoDB table (see `TABLE.md`), [`create_table`].
//! - [`AwsClients`]: every client built once from one `SdkConfig`.
//! - [`errors`]: the single mapping from SDK errors to `FanoutError`.
//!
//! Nothing here decides anything: pacing, retries and planning live in `sso-fanout-core`.

pub mod clients;
pub mod dynamo;
pub mod errors;
pub mod identity_center;
pub mod ledger;
pub mod org;
mod util;

#[cfg(test)]
mod mock_tests;

pub use clients::AwsClients;
pub use dynamo::{create_table, DynamoStore};
pub use identity_center::{AwsIdentityCenter, IdentityCenterConfig};
pub use org::AwsOrgDirectory;
