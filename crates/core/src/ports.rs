//! The I/O boundary. The planner and engine talk only to these traits; behind them sit the AWS
//! adapters (`sso-fanout-aws`), the simulator (`crate::sim`) and the stores (`crate::store`).

use crate::error::Result;
use crate::ids::{AccountId, PermissionSetArn};
use crate::model::*;
use crate::request::{PermissionSetRef, PrincipalRef};
use async_trait::async_trait;
use std::collections::BTreeSet;

/// AWS Organizations, read-only.
#[async_trait]
pub trait OrgDirectory: Send + Sync {
    /// Which organization this is (one cheap call): the account cache is keyed by it.
    async fn identity(&self) -> Result<OrgIdentity>;

    /// The whole inventory: roots, every OU, every account with status, OU path (walked from
    /// the OU tree, not `ListParents` per account) and tags, plus the management account id.
    async fn snapshot(&self) -> Result<OrgSnapshot>;

    /// These accounts as Organizations has them now (status, OU path by `ListParents` up to the
    /// root, tags): a few calls per account, for a reconcile of the accounts an event names.
    /// An id the organization does not have is `NotFound`.
    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>>;
}

/// Spends one request of the instance's sso-admin request rate (the shared quota's), waiting
/// as long as needed.
#[async_trait]
pub trait RequestGate: Send + Sync {
    async fn admit(&self);
}

/// Identity Center look-ups the planner makes (sso-admin reads and the Identity Store). The
/// sso-admin ones spend the instance's request budget; an adapter may retry them itself.
#[async_trait]
pub trait Directory: Send + Sync {
    /// From now on every sso-admin request of the look-ups below (not `instance`) first passes
    /// `gate`, so planning spends the request rate shared with running workers. Adapters that
    /// make no such requests ignore it.
    fn gate_lookups(&self, _gate: std::sync::Arc<dyn RequestGate>) {}

    async fn instance(&self) -> Result<Instance>;

    /// A permission set by name or ARN. Unknown -> `NotFound`; several with one name -> `Ambiguous`.
    async fn resolve_permission_set(&self, permission_set: &PermissionSetRef) -> Result<PermissionSet>;

    /// A group by display name or a user by user name (Identity Store), or check an id.
    async fn resolve_principal(&self, principal: &PrincipalRef) -> Result<Principal>;

    /// Accounts in which `principal` already holds `permission_set_arn`. One paginated
    /// principal-wide listing where available; adapters may fall back to per-account listing
    /// of `candidates` (the target accounts) where it is not.
    async fn assigned_accounts(
        &self,
        principal: &Principal,
        permission_set_arn: &PermissionSetArn,
        candidates: &[AccountId],
    ) -> Result<BTreeSet<AccountId>>;

    /// Every assignment `principal` holds on the instance (every account, every permission set):
    /// one paginated ListAccountAssignmentsForPrincipal; `pages` is the number of calls it took.
    /// No per-account fallback: where the listing is unavailable this is an error saying so.
    async fn principal_assignments(&self, principal: &Principal) -> Result<PrincipalAssignments>;
}

/// What [`Directory::principal_assignments`] found: every (account, permission set) the
/// principal holds, and how many listing pages (requests) it took.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrincipalAssignments {
    pub assignments: BTreeSet<(AccountId, PermissionSetArn)>,
    pub pages: u32,
}

/// The asynchronous assignment operations the engine starts and watches. Every call spends
/// the shared sso-admin request budget; adapters must not retry on their own (the engine paces
/// and retries, so that it sees every throttle).
#[async_trait]
pub trait AssignmentOps: Send + Sync {
    async fn create_assignment(&self, key: &AssignmentKey) -> Result<OpStatus>;

    /// Deleting an assignment that does not exist is `NotFound` (callers treat it as done).
    async fn delete_assignment(&self, key: &AssignmentKey) -> Result<OpStatus>;

    /// Status of one create (`Operation::Assign`) or delete (`Operation::Revoke`) request.
    async fn operation_status(&self, op: Operation, request_id: &str) -> Result<OpStatus>;

    /// Request ids of all create/delete operations of the instance still IN_PROGRESS: one call
    /// answers for every pending operation. `Unsupported` where the endpoint lacks it.
    async fn in_progress_operations(&self, op: Operation) -> Result<BTreeSet<String>>;
}
