//! What a plan is: the data the planner produces and every later step reads (workers through
//! the store, the reporter, the CLI). How it is made lives in `planner`.

use crate::ids::AccountId;
use crate::model::*;
use crate::request::RunRequest;
use crate::tiers::{AwsLimits, BindingLimit, LatencyModel, QuotaBudget};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanItem {
    pub account_id: AccountId,
    pub account_name: String,
    pub action: Action,
}

/// What one batch may spend of the account-wide quota at most. Batches that run side by side
/// do so only with the shared quota ledger, which keeps their sum within the budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaShare {
    pub in_flight: u32,
    pub requests_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    pub index: u32,
    pub share: QuotaShare,
    pub items: Vec<PlanItem>,
}

/// Engine settings carried in the plan so every worker applies the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineSettings {
    pub account_timeout_s: u32,
    pub max_retries: u32,
    pub time_budget_s: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierChoice {
    pub name: String,
    pub org_accounts: usize,
    /// What the tier asked for (accounts at once) before the quotas applied.
    pub requested_concurrency: u32,
    pub in_flight: u32,
    pub requests_per_second: f64,
    pub binding: BindingLimit,
    pub binding_text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub seconds: f64,
    pub changes: usize,
    pub latency: LatencyModel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub run_id: String,
    /// Unix seconds.
    pub created_at: u64,
    pub request: RunRequest,
    pub operation: Operation,
    pub instance: Instance,
    /// The organization, instance and region the plan was made against.
    pub scope: Scope,
    pub permission_set: PermissionSet,
    pub principal: Principal,
    /// Accounts that already are as requested: no write.
    pub skipped: Vec<PlanItem>,
    pub batches: Vec<Batch>,
    /// Batches to run at once (the Map state's MaxConcurrency), and why.
    pub map_concurrency: u32,
    #[serde(default)]
    pub map_reason: String,
    pub tier: TierChoice,
    pub settings: EngineSettings,
    pub estimate: Estimate,
    /// The limits the plan was made under.
    #[serde(default)]
    pub quota: PlanQuota,
    /// Clamped tuning, ignored accounts and the like: shown to the user, never silent.
    pub warnings: Vec<String>,
}

/// Identity Center's published limits (`maxOutstanding`, `requestsPerSecond`) and, under
/// `budget`, what the plan spends of them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanQuota {
    #[serde(flatten)]
    pub limits: AwsLimits,
    pub budget: QuotaBudget,
}

impl Plan {
    pub fn changes(&self) -> usize {
        self.batches.iter().map(|b| b.items.len()).sum()
    }

    pub fn target_count(&self) -> usize {
        self.changes() + self.skipped.len()
    }

    /// Every target with its action, in account-name order.
    pub fn items(&self) -> Vec<&PlanItem> {
        let mut all: Vec<&PlanItem> = self.batches.iter().flat_map(|b| &b.items).chain(&self.skipped).collect();
        all.sort_by(|a, b| a.account_name.cmp(&b.account_name).then(a.account_id.cmp(&b.account_id)));
        all
    }

    pub fn assignment_key(&self, account_id: &AccountId) -> AssignmentKey {
        AssignmentKey {
            account_id: account_id.clone(),
            permission_set_arn: self.permission_set.arn.clone(),
            principal_type: self.principal.kind,
            principal_id: self.principal.id.clone(),
        }
    }
}
