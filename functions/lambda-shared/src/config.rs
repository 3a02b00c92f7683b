//! Environment configuration, read once per container.

use sso_fanout_aws::{AwsClients, AwsIdentityCenter, AwsOrgDirectory, DynamoStore, IdentityCenterConfig};
use sso_fanout_aws::ledger::DynamoLedger;
use sso_fanout_core::pipeline::Services;
use sso_fanout_core::quota::Ledger;
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::store::DEFAULT_RETENTION_DAYS;
use sso_fanout_core::tiers::QuotaBudget;
use sso_fanout_core::{FanoutError, Result};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// `FANOUT_TABLE`: the DynamoDB table (required).
    pub table: String,
    /// `IDENTITY_CENTER_INSTANCE_ARN` / `IDENTITY_STORE_ID`: skip discovery when set.
    pub identity_center: IdentityCenterConfig,
    /// `RESULT_RETENTION_DAYS` (default `DEFAULT_RETENTION_DAYS`).
    pub result_retention_days: u32,
    pub planner: PlannerConfig,
}

impl LambdaConfig {
    pub fn from_env() -> Result<LambdaConfig> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any variable source (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<LambdaConfig> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let number = |k: &str, default: u64| -> Result<u64> {
            match non_empty(k) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| FanoutError::Config(format!("{k}={v:?} is not a whole number"))),
            }
        };
        let table = non_empty("FANOUT_TABLE").ok_or_else(|| FanoutError::Config("FANOUT_TABLE is not set (the DynamoDB table name)".into()))?;
        // Every worker and execution spends the quota through the table's ledger.
        let mut planner = PlannerConfig { shared_quota: true, ..PlannerConfig::default() };
        planner.account_cache_max_age_s = number("ACCOUNT_CACHE_MAX_AGE_SECONDS", planner.account_cache_max_age_s)?;
        planner.worker_time_budget_s = number("WORKER_TIME_BUDGET_SECONDS", planner.worker_time_budget_s as u64)? as u32;
        let rate = match non_empty("REQUESTS_PER_SECOND") {
            None => None,
            Some(v) => Some(v.trim().parse::<f64>().map_err(|_| FanoutError::Config(format!("REQUESTS_PER_SECOND={v:?} is not a number")))?),
        };
        let outstanding = non_empty("MAX_OUTSTANDING_OPERATIONS").map(|_| number("MAX_OUTSTANDING_OPERATIONS", 0)).transpose()?;
        planner.budget = QuotaBudget::with_overrides(
            &planner.limits,
            outstanding.map(|n| n as u32),
            rate,
            ["MAX_OUTSTANDING_OPERATIONS", "REQUESTS_PER_SECOND"],
        )?;
        Ok(LambdaConfig {
            table,
            identity_center: IdentityCenterConfig {
                instance_arn: non_empty("IDENTITY_CENTER_INSTANCE_ARN"),
                identity_store_id: non_empty("IDENTITY_STORE_ID"),
            },
            result_retention_days: number("RESULT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS as u64)? as u32,
            planner,
        })
    }

    /// The AWS-backed ports, built once per container (clients pool their connections).
    pub async fn services(&self) -> Services {
        self.services_with(&AwsClients::from_env(None, None).await)
    }

    /// The ports over given clients (tests pass clients pinned to a local emulator).
    pub fn services_with(&self, clients: &AwsClients) -> Services {
        // The ledger's client has the ledger's timeouts; its clock is DynamoDB's, measured from
        // the answers' Date (Lambdas of one stack share no machine clock).
        let ledger = DynamoLedger::new(clients.ledger_dynamodb.clone(), self.table.clone());
        Services::new(
            Arc::new(AwsOrgDirectory::new(clients.organizations.clone())),
            Arc::new(AwsIdentityCenter::from_clients(clients, self.identity_center.clone())),
            Arc::new(DynamoStore::new(clients.dynamodb.clone(), self.table.clone()).with_retention_days(self.result_retention_days)),
        )
        .with_quota(Ledger::new(Arc::new(ledger), clients.ledger_clock.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_values_and_defaults() {
        let c = LambdaConfig::from_lookup(lookup(&[("FANOUT_TABLE", "t"), ("IDENTITY_STORE_ID", ""), ("WORKER_TIME_BUDGET_SECONDS", "300")])).unwrap();
        assert_eq!(c.table, "t");
        assert_eq!(c.identity_center.identity_store_id, None);
        assert_eq!(c.planner.worker_time_budget_s, 300);
        assert_eq!(c.result_retention_days, 30);
    }

    #[test]
    fn the_quota_budget_comes_from_the_environment_within_the_published_limits() {
        let c = LambdaConfig::from_lookup(lookup(&[("FANOUT_TABLE", "t")])).unwrap();
        assert_eq!((c.planner.budget.max_outstanding, c.planner.budget.requests_per_second), (15, 18.0));
        let c = LambdaConfig::from_lookup(lookup(&[("FANOUT_TABLE", "t"), ("MAX_OUTSTANDING_OPERATIONS", "6"), ("REQUESTS_PER_SECOND", "9.5")])).unwrap();
        assert_eq!((c.planner.budget.max_outstanding, c.planner.budget.requests_per_second), (6, 9.5));
        let e = LambdaConfig::from_lookup(lookup(&[("FANOUT_TABLE", "t"), ("MAX_OUTSTANDING_OPERATIONS", "30")])).unwrap_err();
        assert!(e.to_string().contains("MAX_OUTSTANDING_OPERATIONS") && e.to_string().contains("15"), "{e}");
        let e = LambdaConfig::from_lookup(lookup(&[("FANOUT_TABLE", "t"), ("REQUESTS_PER_SECOND", "21")])).unwrap_err();
        assert_eq!(e.error_type(), "ConfigError");
    }

    #[test]
    fn missing_table_or_bad_number_is_a_config_error() {
        let e = LambdaConfig::from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(e.error_type(), "ConfigError");
        let e = LambdaConfig::from_lookup(lookup(&[("FANOUT_TABLE", "t"), ("RESULT_RETENTION_DAYS", "ten")])).unwrap_err();
        assert!(e.to_string().contains("RESULT_RETENTION_DAYS"), "{e}");
    }
}
