//! Builds the ports for a command: the simulator (`--sim N`) or AWS (the adapters of
//! `sso-fanout-aws`, through the standard credential chain and `AWS_ENDPOINT_URL[_<SERVICE>]`),
//! and the store: memory for the simulator, the embedded file by default, DynamoDB with --table.

use crate::args::{BackendArgs, FaultProfile};
use crate::quota_file::FileLedger;
use crate::store::EmbeddedStore;
use sso_fanout_aws::{AwsClients, AwsIdentityCenter, AwsOrgDirectory, DynamoStore, IdentityCenterConfig};
use sso_fanout_core::pipeline::Services;
use sso_fanout_aws::ledger::DynamoLedger;
use sso_fanout_core::quota::{Ledger, MemoryInstance, QuotaClock, WallClock};
use sso_fanout_core::store::{MemoryStore, QuotaLedger, RunStore};
use sso_fanout_core::{FanoutError, Result};
use sso_fanout_sim::{Faults, SimCloud, SimConfig};
use std::path::PathBuf;
use std::sync::Arc;

pub struct Backend {
    pub services: Services,
    /// Where results are kept, for messages.
    pub store_location: String,
    /// With --sim: how long a first read of the simulated organization takes on the real clock
    /// (Organizations answers at its own pace), for a word while planning.
    pub simulated_org_read_s: Option<f64>,
}

/// Refuses a simulated organization larger than the simulator is meant for.
pub fn check_simulated_size(flag: &str, accounts: usize) -> Result<()> {
    if accounts == 0 || accounts > sso_fanout_sim::org::MAX_ACCOUNTS {
        return Err(FanoutError::invalid(
            flag,
            accounts,
            format!(
                "1 to {} member accounts: the simulator is meant for organizations up to that size (Identity Center manages 7,000 accounts per instance by default)",
                sso_fanout_sim::org::MAX_ACCOUNTS
            ),
        ));
    }
    Ok(())
}

pub fn faults(profile: FaultProfile) -> Faults {
    match profile {
        FaultProfile::None => Faults::default(),
        FaultProfile::Chaos => Faults::chaos(),
    }
}

pub async fn connect(args: &BackendArgs) -> Result<Backend> {
    match args.sim {
        Some(accounts) => {
            check_simulated_size("--sim", accounts)?;
            let mut config = SimConfig::new(accounts, args.seed);
            config.faults = faults(args.faults);
            if let Some(latency) = args.latency {
                config.latency = latency;
            }
            let org_read_s = sso_fanout_sim::org::read_calls(accounts, config.org_page_size) as f64 / config.org_requests_per_second;
            let sim = Arc::new(SimCloud::new(config));
            let (store, store_location) = match &args.store {
                Some(path) => (Arc::new(EmbeddedStore::open(path)?) as Arc<dyn RunStore>, path.display().to_string()),
                None => (Arc::new(MemoryStore::new()) as Arc<dyn RunStore>, "memory (simulator)".to_string()),
            };
            // The simulated instance lives in this process: so does its quota ledger.
            let services = Services::new(sim.clone(), sim, store).with_quota(MemoryInstance::new().process());
            Ok(Backend { services, store_location, simulated_org_read_s: Some(org_read_s) })
        }
        None => connect_aws(args).await,
    }
}

async fn connect_aws(args: &BackendArgs) -> Result<Backend> {
    let clients = AwsClients::from_env(args.aws.profile.as_deref(), args.aws.region.as_deref()).await;
    // The quota ledger lives with the store: the stack's table (shared with its executions),
    // else the embedded file (shared by the CLI processes of this machine).
    let (store, ledger, store_location): (Arc<dyn RunStore>, Arc<dyn QuotaLedger>, String) = match (&args.table, &args.store) {
        (Some(table), _) => (
            Arc::new(DynamoStore::new(clients.dynamodb.clone(), table.clone())),
            Arc::new(DynamoLedger::new(clients.ledger_dynamodb.clone(), table.clone())),
            format!("DynamoDB table {table}"),
        ),
        (None, path) => {
            let path = match path {
                Some(path) => path.clone(),
                None => default_store_path()?,
            };
            let quota_file = match &args.quota_file {
                Some(file) => file.clone(),
                None => default_quota_file()?,
            };
            (Arc::new(EmbeddedStore::open(&path)?), Arc::new(FileLedger::open(&quota_file)?), path.display().to_string())
        }
    };
    // The table's ledger is shared with the stack's Lambdas on other machines: its clock is
    // DynamoDB's, measured from its answers. The file is shared on this machine: Unix time.
    let clock: Arc<dyn QuotaClock> = if args.table.is_some() { clients.ledger_clock.clone() } else { Arc::new(WallClock) };
    let identity_center = IdentityCenterConfig { instance_arn: args.instance_arn.clone(), identity_store_id: args.identity_store_id.clone() };
    let services = Services::new(
        Arc::new(AwsOrgDirectory::new(clients.organizations.clone())),
        Arc::new(AwsIdentityCenter::from_clients(&clients, identity_center)),
        store,
    )
    .with_quota(Ledger::new(ledger, clock));
    Ok(Backend { services, store_location, simulated_org_read_s: None })
}

/// The embedded store's default path: `<data dir>/sso-fanout/store.redb`.
pub fn default_store_path() -> Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("sso-fanout").join("store.redb"))
        .ok_or_else(|| FanoutError::Config("no data directory for this user; pass --store PATH".into()))
}

/// The machine's quota ledger: `<data dir>/sso-fanout/quota.json`.
pub fn default_quota_file() -> Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("sso-fanout").join("quota.json"))
        .ok_or_else(|| FanoutError::Config("no data directory for this user; pass --quota-file PATH".into()))
}
