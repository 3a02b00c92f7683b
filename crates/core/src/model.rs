//! Plain data shared by every layer: accounts, principals, assignments and operation states.

use crate::ids::{AccountId, PermissionSetArn, PrincipalId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Assign,
    Revoke,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Assign => "assign",
            Operation::Revoke => "revoke",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccountStatus {
    Active,
    Suspended,
    PendingClosure,
}

/// One account of the organization, as kept in the account cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub email: String,
    pub status: AccountStatus,
    /// OU ids from the root's child down to the account's parent (empty when directly under root).
    #[serde(default)]
    pub ou_path: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One organizational unit of the organization's OU tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgUnit {
    pub id: String,
    pub name: String,
    /// The parent OU's id, or the root id.
    pub parent_id: String,
}

/// A snapshot of the organization: what the planner targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgSnapshot {
    pub organization_id: String,
    pub management_account_id: AccountId,
    /// Root ids (an organization has one). A snapshot without them predates OU checking and
    /// is read again from Organizations.
    #[serde(default)]
    pub roots: Vec<String>,
    /// Every OU of the tree, so OU ids in a request are checked against it.
    #[serde(default)]
    pub ous: Vec<OrgUnit>,
    pub accounts: Vec<Account>,
    /// Unix seconds when this snapshot was read from Organizations.
    pub fetched_at: u64,
}

impl OrgSnapshot {
    pub fn is_root(&self, id: &str) -> bool {
        self.roots.iter().any(|r| r == id)
    }

    pub fn ou(&self, id: &str) -> Option<&OrgUnit> {
        self.ous.iter().find(|o| o.id == id)
    }

    /// OU names from the root down, e.g. `Prod/Payments` (ids where a name is unknown).
    pub fn ou_names(&self, path: &[String]) -> String {
        path.iter().map(|id| self.ou(id).map(|o| o.name.as_str()).unwrap_or(id.as_str())).collect::<Vec<_>>().join("/")
    }
}

/// Who an organization is: what the account cache and the latency history are keyed by, so
/// that data read from one organization is never used for another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgIdentity {
    pub organization_id: String,
    pub management_account_id: AccountId,
}

/// The organization, Identity Center instance and region a run works on. The account cache and
/// the latency history belong to one scope; data of another scope (another organization, a
/// second `--profile`, the simulator) is never read in its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scope {
    pub organization_id: String,
    pub management_account_id: String,
    pub instance_arn: String,
    pub region: String,
}

impl Scope {
    pub fn new(org: &OrgIdentity, instance: &Instance) -> Scope {
        Scope {
            organization_id: org.organization_id.clone(),
            management_account_id: org.management_account_id.to_string(),
            instance_arn: instance.instance_arn.clone(),
            region: instance.region.clone(),
        }
    }

    /// A stable key: `<organization>#<management account>#<instance id>#<region>`.
    pub fn key(&self) -> String {
        let instance = self.instance_arn.rsplit('/').next().unwrap_or(&self.instance_arn);
        format!("{}#{}#{}#{}", self.organization_id, self.management_account_id, instance, self.region)
    }

    /// Whether `snapshot` was read from this scope's organization.
    pub fn owns(&self, snapshot: &OrgSnapshot) -> bool {
        snapshot.organization_id == self.organization_id && snapshot.management_account_id == self.management_account_id.as_str()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PrincipalType {
    Group,
    User,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::Group => "GROUP",
            PrincipalType::User => "USER",
        }
    }
}

/// A resolved principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principal {
    #[serde(rename = "type")]
    pub kind: PrincipalType,
    pub id: PrincipalId,
    /// Display name (group) or user name, when known.
    #[serde(default)]
    pub name: Option<String>,
}

/// A resolved permission set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionSet {
    pub arn: PermissionSetArn,
    pub name: String,
}

/// The Identity Center instance the run works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instance {
    pub instance_arn: String,
    pub identity_store_id: String,
    /// The region the instance is called in (`sim` for the simulator).
    #[serde(default)]
    pub region: String,
}

/// One assignment: (permission set, principal) in one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentKey {
    pub account_id: AccountId,
    pub permission_set_arn: PermissionSetArn,
    pub principal_type: PrincipalType,
    pub principal_id: PrincipalId,
}

/// State of an asynchronous create/delete, as Identity Center reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OpState {
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpStatus {
    pub request_id: String,
    pub state: OpState,
    #[serde(default)]
    pub failure_reason: Option<String>,
    /// The assignment the operation is for, where the answer says (a describe does; a create's
    /// answer is for the assignment asked for): how a listed request id is told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<AssignmentKey>,
}

impl OpStatus {
    /// An answer that names only the request and its state.
    pub fn of(request_id: impl Into<String>, state: OpState, failure_reason: Option<String>) -> OpStatus {
        OpStatus { request_id: request_id.into(), state, failure_reason, target: None }
    }
}

/// The final state of one account in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Skipped,
    Failed,
    TimedOut,
    /// Never sent: the run was interrupted, the worker's time budget or the quota ran out, or
    /// the account's chain held it back. Nothing of it is in flight; a re-run sends it.
    NotStarted,
}

impl Outcome {
    /// How final an outcome is: a stored result is replaced only by one at least as final, so
    /// a retried worker's `timed_out` never hides a final result. The one order for every store.
    pub fn finality(self) -> u8 {
        match self {
            Outcome::TimedOut | Outcome::NotStarted => 0,
            Outcome::Skipped | Outcome::Succeeded | Outcome::Failed => 1,
        }
    }

    /// Succeeded, skipped or failed: nothing more will happen to this account in this run.
    pub fn is_final(self) -> bool {
        self.finality() > 0
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::NotStarted => "not_started",
        }
    }
}

/// The result of one account in one run; streamed to the store as it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountResult {
    pub run_id: String,
    pub batch: u32,
    pub account_id: AccountId,
    pub account_name: String,
    pub action: Action,
    /// The plan's pair (`Plan::pair`) the result is for: 0 in a single-pair run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pair: u32,
    pub outcome: Outcome,
    #[serde(default)]
    pub request_id: Option<String>,
    /// AWS's FailureReason, or the error that ended the account.
    #[serde(default)]
    pub reason: Option<String>,
    pub attempts: u32,
    /// From the first call for this account to its final state.
    pub duration_ms: u64,
    /// From acceptance of the successful request to SUCCEEDED/FAILED, when known.
    #[serde(default)]
    pub provisioning_ms: Option<u64>,
}

impl AccountResult {
    /// What a result is stored under within its run (see `result_key`).
    pub fn key(&self) -> String {
        result_key(&self.account_id, self.pair)
    }
}

/// A result's key within its run: the account id, plus `#<pair>` for a rules plan's further
/// pairs, so one account can hold several results and a single-pair run's keys stay as they were.
pub fn result_key(account_id: &AccountId, pair: u32) -> String {
    if pair == 0 { account_id.to_string() } else { format!("{account_id}#{pair}") }
}

pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the plan does in one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Delete,
    Skip,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Delete => "delete",
            Action::Skip => "skip",
        }
    }
}
