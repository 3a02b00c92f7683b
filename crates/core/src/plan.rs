//! What a plan is: the data the planner produces and every later step reads (workers through
//! the store, the reporter, the CLI). How it is made lives in `planner`.

use crate::ids::AccountId;
use crate::model::*;
use crate::request::RunRequest;
use crate::tiers::{AwsLimits, BindingLimit, LatencyModel, QuotaBudget};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanItem {
    pub account_id: AccountId,
    pub account_name: String,
    pub action: Action,
    /// Which of the plan's pairs (`Plan::pair`) the item changes: always 0 in a single-pair plan.
    #[serde(default, skip_serializing_if = "crate::model::is_zero")]
    pub pair: u32,
}

/// One (permission set, principal) pair a plan changes assignments of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pair {
    pub permission_set: PermissionSet,
    pub principal: Principal,
}

/// What one batch may spend of the account-wide quota at most. Batches that run side by side
/// do so only with the shared quota ledger, which keeps their sum within the budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaShare {
    pub in_flight: u32,
    pub requests_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Batch {
    pub index: u32,
    pub share: QuotaShare,
    pub items: Vec<PlanItem>,
}

/// Engine settings carried in the plan so every worker applies the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EngineSettings {
    pub account_timeout_s: u32,
    pub max_retries: u32,
    pub time_budget_s: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Estimate {
    pub seconds: f64,
    pub changes: usize,
    pub latency: LatencyModel,
}

/// What a plan was made from: a single-pair request, or a rules document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlanRequest {
    Rules(crate::desired::RulesRequest),
    Single(RunRequest),
}

impl PlanRequest {
    pub fn dry_run(&self) -> bool {
        match self {
            PlanRequest::Rules(r) => r.dry_run,
            PlanRequest::Single(r) => r.dry_run,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plan {
    pub run_id: String,
    /// Unix seconds.
    pub created_at: u64,
    pub request: PlanRequest,
    /// The single request's operation (a rules plan: `assign`; its items' actions say more).
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
    /// A rules plan's pairs, indexed by `PlanItem::pair`. Empty in a single-pair plan, whose one
    /// pair is `permission_set` + `principal` (in a rules plan those repeat `pairs[0]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<Pair>,
    /// A rules plan's drift report and prune decisions (None: a single-pair plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<crate::desired::DesiredPlan>,
}

/// Identity Center's published limits (`maxOutstanding`, `requestsPerSecond`) and, under
/// `budget`, what the plan spends of them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "PlanQuotaFields")]
pub struct PlanQuota {
    #[serde(flatten)]
    pub limits: AwsLimits,
    pub budget: QuotaBudget,
}

/// `PlanQuota` as written: serde cannot refuse unknown fields beside a `flatten`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlanQuotaFields {
    max_outstanding: u32,
    requests_per_second: f64,
    budget: QuotaBudget,
}

impl From<PlanQuotaFields> for PlanQuota {
    fn from(q: PlanQuotaFields) -> PlanQuota {
        PlanQuota { limits: AwsLimits { max_outstanding: q.max_outstanding, requests_per_second: q.requests_per_second }, budget: q.budget }
    }
}

impl Plan {
    /// A plan file as `sso-fanout plan --out` wrote it, read as every document is (`document`):
    /// a key given twice or a field no plan has is refused by its path, named under `whole`.
    pub fn from_json(text: &str, whole: &str) -> crate::error::Result<Plan> {
        let value = crate::document::json(text, whole)?;
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            crate::error::FanoutError::invalid(
                if path.is_empty() || path == "." { whole.to_string() } else { format!("{whole} {path}") },
                "",
                format!("a plan as `sso-fanout plan --out FILE` wrote it ({})", e.into_inner()),
            )
        })
    }

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

    /// The (permission set, principal) of pair `index` (see `PlanItem::pair`).
    pub fn pair(&self, index: u32) -> (&PermissionSet, &Principal) {
        match self.pairs.get(index as usize) {
            Some(p) => (&p.permission_set, &p.principal),
            None => (&self.permission_set, &self.principal),
        }
    }

    /// Every pair the plan may change, in index order.
    pub fn all_pairs(&self) -> Vec<(&PermissionSet, &Principal)> {
        (0..self.pairs.len().max(1) as u32).map(|i| self.pair(i)).collect()
    }

    pub fn assignment_key(&self, item: &PlanItem) -> AssignmentKey {
        let (permission_set, principal) = self.pair(item.pair);
        AssignmentKey {
            account_id: item.account_id.clone(),
            permission_set_arn: permission_set.arn.clone(),
            principal_type: principal.kind,
            principal_id: principal.id.clone(),
        }
    }
}
