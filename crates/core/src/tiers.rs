//! The published Identity Center quotas and the tier table. This file is the one place where
//! these numbers live; the planner, the estimate, the simulator and the bench all read them here.

use crate::error::{FanoutError, Result};
use crate::model::Operation;
use serde::{Deserialize, Serialize};

/// IAM Identity Center's published throttle limits (user guide, "Quotas", "IAM Identity Center
/// throttle limits"), per instance and region, not adjustable: what the simulator enforces and
/// the bound is computed with. What sso-fanout spends of them is a `QuotaBudget`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsLimits {
    /// CreateAccountAssignment / DeleteAccountAssignment operations outstanding at once
    /// (AWS documents 15 for creates; deletes are counted in the same pool).
    pub max_outstanding: u32,
    /// All sso-admin APIs together, requests per second.
    pub requests_per_second: f64,
}

impl AwsLimits {
    /// As published: 15 outstanding asynchronous assignment calls, 20 requests/s.
    pub const PUBLISHED: AwsLimits = AwsLimits { max_outstanding: 15, requests_per_second: 20.0 };
}

impl Default for AwsLimits {
    fn default() -> Self {
        AwsLimits::PUBLISHED
    }
}

/// What sso-fanout plans to spend of the `AwsLimits`. The request rate keeps 10% free
/// (`RATE_HEADROOM`): it is shared with the console and every other caller of the instance, and
/// call latency jitters. The outstanding-operation slots are all used by default: only writes
/// take one, and a slot another tool holds costs one throttled create, which is retried.
/// Either can be lowered (CLI `--max-outstanding` / `--requests-per-second`, Lambda
/// `MAX_OUTSTANDING_OPERATIONS` / `REQUESTS_PER_SECOND`, template parameters); a value above
/// the published limit is refused.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaBudget {
    pub max_outstanding: u32,
    pub requests_per_second: f64,
}

/// The lowest request rate a budget may set (requests/s).
pub const MIN_REQUESTS_PER_SECOND: f64 = 1.0;

/// Share of the published request rate the default budget leaves to other callers.
pub const RATE_HEADROOM: f64 = 0.1;

impl QuotaBudget {
    /// The default budget for `limits`.
    pub fn within(limits: &AwsLimits) -> QuotaBudget {
        QuotaBudget { max_outstanding: limits.max_outstanding, requests_per_second: limits.requests_per_second * (1.0 - RATE_HEADROOM) }
    }

    /// The default budget with the given overrides, refused (naming `source`'s settings) when
    /// above the limits or not positive.
    pub fn with_overrides(limits: &AwsLimits, max_outstanding: Option<u32>, requests_per_second: Option<f64>, source: [&str; 2]) -> Result<QuotaBudget> {
        let mut budget = QuotaBudget::within(limits);
        if let Some(n) = max_outstanding {
            if n == 0 || n > limits.max_outstanding {
                return Err(FanoutError::Config(format!(
                    "{} = {n}: give 1 to {} (Identity Center allows {} outstanding assignment operations; more would only be throttled)",
                    source[0], limits.max_outstanding, limits.max_outstanding
                )));
            }
            budget.max_outstanding = n;
        }
        if let Some(r) = requests_per_second {
            if !(MIN_REQUESTS_PER_SECOND..=limits.requests_per_second).contains(&r) {
                return Err(FanoutError::Config(format!(
                    "{} = {r}: give {MIN_REQUESTS_PER_SECOND} to {} (Identity Center's request rate for all its APIs together; \
                     below {MIN_REQUESTS_PER_SECOND} a run of a few dozen accounts takes minutes and its look-ups alone most of them)",
                    source[1], limits.requests_per_second
                )));
            }
            budget.requests_per_second = r;
        }
        Ok(budget)
    }
}

impl Default for QuotaBudget {
    fn default() -> Self {
        QuotaBudget::within(&AwsLimits::PUBLISHED)
    }
}

/// One row of the tier table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tier {
    pub name: String,
    /// The tier applies to organizations with at most this many accounts (None = any size).
    pub max_accounts: Option<usize>,
    /// Accounts to work on at once, as the seed's table asks (clamped to the quota).
    pub concurrency: u32,
    /// Accounts per worker batch. None = as many as fit in the worker's time budget.
    pub batch_size: Option<u32>,
}

/// The tier table: organization size -> settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierTable {
    pub tiers: Vec<Tier>,
    /// Revoke runs get this many more concurrent accounts (seed: +5).
    pub revoke_extra_concurrency: u32,
}

impl Default for TierTable {
    /// The seed's tiers and concurrency (what its users were promised), with batches sized to
    /// the worker's time budget: the seed's 50-account chunks drain to zero in-flight
    /// operations at every boundary (`sso-fanout bench --batch-size 50` measures the cost).
    fn default() -> TierTable {
        let tier = |name: &str, max, concurrency| Tier { name: name.into(), max_accounts: max, concurrency, batch_size: None };
        TierTable {
            tiers: vec![tier("small", Some(10), 15), tier("medium", Some(50), 25), tier("large", None, 30)],
            revoke_extra_concurrency: 5,
        }
    }
}

impl TierTable {
    /// The tier for an organization of `org_accounts` accounts.
    pub fn pick(&self, org_accounts: usize) -> &Tier {
        self.tiers
            .iter()
            .find(|t| t.max_accounts.is_none_or(|m| org_accounts <= m))
            .unwrap_or_else(|| self.tiers.last().expect("tier table is never empty"))
    }

    pub fn concurrency(&self, tier: &Tier, op: Operation) -> u32 {
        match op {
            Operation::Assign => tier.concurrency,
            Operation::Revoke => tier.concurrency + self.revoke_extra_concurrency,
        }
    }
}

/// Provisioning latency assumption: a lognormal distribution given by its median and p99.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyModel {
    pub median_s: f64,
    pub p99_s: f64,
    /// Where the numbers come from: "default" or "observed (N samples)".
    #[serde(default)]
    pub samples: usize,
}

/// z-score of the 99th percentile of a standard normal distribution.
const Z99: f64 = 2.326_347_874;

impl Default for LatencyModel {
    /// Median 3 s, p99 about 15 s: what assignments into ordinary accounts take.
    fn default() -> Self {
        LatencyModel { median_s: 3.0, p99_s: 15.0, samples: 0 }
    }
}

impl LatencyModel {
    /// What batches are sized for while an instance has no latency history: slow provisioning
    /// (a batch sized for 3 s that meets 10 s would run out of worker time and leave accounts
    /// unstarted). Batches run side by side, so smaller ones cost little.
    pub const UNKNOWN_FOR_SIZING: LatencyModel = LatencyModel { median_s: 10.0, p99_s: 50.0, samples: 0 };

    pub fn sigma(&self) -> f64 {
        (self.p99_s / self.median_s).ln().max(0.0) / Z99
    }

    pub fn mean_s(&self) -> f64 {
        self.median_s * (self.sigma().powi(2) / 2.0).exp()
    }

    /// Expected value of the largest of `k` independent provisioning latencies:
    /// integral of 1 - F(x)^k over x >= 0, numerically (the last wave of a run ends with it).
    pub fn expected_max_s(&self, k: usize) -> f64 {
        if k <= 1 {
            return self.mean_s();
        }
        let (mu, sigma) = (self.median_s.ln(), self.sigma().max(1e-6));
        let upper = (mu + 8.0 * sigma).exp();
        const STEPS: usize = 4000;
        let dx = upper / STEPS as f64;
        (0..STEPS)
            .map(|i| {
                let x = (i as f64 + 0.5) * dx;
                let cdf = 0.5 * (1.0 + erf((x.ln() - mu) / (sigma * std::f64::consts::SQRT_2)));
                (1.0 - cdf.powi(k as i32)) * dx
            })
            .sum()
    }

    /// Learns from observed provisioning latencies (ms); needs at least 20 to replace the default.
    pub fn from_samples(samples_ms: &[u64]) -> Option<LatencyModel> {
        if samples_ms.len() < 20 {
            return None;
        }
        let mut sorted = samples_ms.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        let median_s = at(0.5).max(0.05);
        Some(LatencyModel { median_s, p99_s: at(0.99).max(median_s), samples: sorted.len() })
    }
}

/// The error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7): enough for an estimate.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

/// Which limit decides a run's speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingLimit {
    /// 10 outstanding assignment operations: throughput = 10 / provisioning latency.
    OutstandingOperations,
    /// 20 sso-admin requests per second shared by all calls.
    RequestRate,
    /// The slowest single provisioning decides (few accounts).
    SlowestAccount,
}

impl BindingLimit {
    pub fn describe(self, budget: &QuotaBudget) -> String {
        match self {
            BindingLimit::OutstandingOperations => format!("outstanding assignment operations ({} at once)", budget.max_outstanding),
            BindingLimit::RequestRate => format!("sso-admin request rate ({} req/s)", budget.requests_per_second),
            BindingLimit::SlowestAccount => "the slowest single provisioning".into(),
        }
    }
}

/// The lower bound (docs/design.md, "The bound") on the makespan of `latencies_s` changes under the quotas:
/// `max(sum(L)/outstanding, max(L), calls_per_change * N / rate)`.
pub fn makespan_bound(latencies_s: &[f64], limits: &AwsLimits, calls_per_change: f64) -> f64 {
    let sum: f64 = latencies_s.iter().sum();
    let max = latencies_s.iter().cloned().fold(0.0, f64::max);
    let calls = calls_per_change * latencies_s.len() as f64 / limits.requests_per_second;
    (sum / limits.max_outstanding as f64).max(max).max(calls)
}

/// Makespan of greedy list scheduling: jobs start in the given order whenever one of `slots`
/// frees up, with no overhead. No scheduler that cannot see latencies in advance does better on
/// average, so this is the reference for "how close to ideal" beside the (unreachable) bound.
pub fn greedy_makespan(latencies_s: &[f64], slots: usize) -> f64 {
    let mut free_at = vec![0.0f64; slots.max(1)];
    for &l in latencies_s {
        let (i, start) = free_at.iter().cloned().enumerate().fold((0, f64::MAX), |best, (i, t)| if t < best.1 { (i, t) } else { best });
        free_at[i] = start + l;
    }
    free_at.into_iter().fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_seed_table() {
        let t = TierTable::default();
        assert_eq!(t.pick(1).name, "small");
        assert_eq!(t.pick(10).name, "small");
        assert_eq!(t.pick(11).name, "medium");
        assert_eq!(t.pick(50).name, "medium");
        assert_eq!(t.pick(51).name, "large");
        assert_eq!(t.pick(5000).name, "large");
        let medium = t.pick(29).clone();
        assert_eq!(t.concurrency(&medium, Operation::Assign), 25);
        assert_eq!(t.concurrency(&medium, Operation::Revoke), 30);
        assert!(t.tiers.iter().all(|tier| tier.batch_size.is_none()), "batches fit the worker's budget");
    }

    #[test]
    fn latency_model_mean_exceeds_median_and_learns() {
        let m = LatencyModel::default();
        assert!((m.sigma() - 0.6918).abs() < 1e-3);
        assert!(m.mean_s() > 3.7 && m.mean_s() < 3.9, "{}", m.mean_s());
        assert!(LatencyModel::from_samples(&[1000; 19]).is_none());
        let samples: Vec<u64> = (1..=100).map(|i| i * 100).collect();
        let learned = LatencyModel::from_samples(&samples).unwrap();
        assert!((learned.median_s - 5.0).abs() < 0.11 && learned.p99_s >= 9.8, "{learned:?}");
    }

    #[test]
    fn expected_maximum_grows_with_the_number_of_draws() {
        let m = LatencyModel::default();
        assert!((m.expected_max_s(1) - m.mean_s()).abs() < 1e-9);
        // Monte-Carlo reference (10^5 runs): the largest of 10 draws averages ~9.55 s.
        let ten = m.expected_max_s(10);
        assert!((9.3..9.8).contains(&ten), "{ten}");
        assert!(m.expected_max_s(100) > ten);
        assert!((erf(0.5) - 0.520_499_88).abs() < 1e-6);
    }

    #[test]
    fn bound_takes_the_largest_term() {
        let q = AwsLimits { max_outstanding: 10, requests_per_second: 20.0 };
        assert_eq!(makespan_bound(&[4.0; 100], &q, 2.0), 40.0);
        assert_eq!(makespan_bound(&[1.0, 30.0], &q, 2.0), 30.0);
        assert_eq!(makespan_bound(&[0.1; 1000], &q, 2.0), 100.0);
        assert_eq!(makespan_bound(&[4.0; 150], &AwsLimits::PUBLISHED, 2.0), 40.0, "15 outstanding as published");
    }

    #[test]
    fn the_budget_stays_within_the_published_limits() {
        let b = QuotaBudget::default();
        assert_eq!((b.max_outstanding, b.requests_per_second), (15, 18.0));
        let names = ["--max-outstanding", "--requests-per-second"];
        let lower = QuotaBudget::with_overrides(&AwsLimits::PUBLISHED, Some(8), Some(10.0), names).unwrap();
        assert_eq!((lower.max_outstanding, lower.requests_per_second), (8, 10.0));
        for (n, r) in [(Some(16), None), (Some(0), None), (None, Some(25.0)), (None, Some(0.0))] {
            let e = QuotaBudget::with_overrides(&AwsLimits::PUBLISHED, n, r, names).unwrap_err();
            assert_eq!(e.error_type(), "ConfigError", "{e}");
        }
    }

    #[test]
    fn greedy_fills_the_earliest_free_slot() {
        assert_eq!(greedy_makespan(&[3.0, 1.0, 1.0, 1.0], 2), 3.0);
        // The long job last: it starts when the first slot frees.
        assert_eq!(greedy_makespan(&[1.0, 1.0, 5.0], 2), 6.0);
        assert_eq!(greedy_makespan(&[2.0; 10], 10), 2.0);
    }
}
