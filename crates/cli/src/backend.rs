//! Builds the ports for a command: the simulator (`--sim N`) or AWS, and the store.

use crate::args::{BackendArgs, FaultProfile};
use sso_fanout_core::pipeline::Services;
use sso_fanout_core::sim::{Faults, SimCloud, SimConfig};
use sso_fanout_core::store::{EmbeddedStore, MemoryStore, RunStore};
use sso_fanout_core::{FanoutError, Result};
use std::path::PathBuf;
use std::sync::Arc;

pub struct Backend {
    pub services: Services,
    /// Where results are kept, for messages.
    pub store_location: String,
}

pub async fn connect(args: &BackendArgs) -> Result<Backend> {
    match args.sim {
        Some(accounts) => {
            if accounts == 0 {
                return Err(FanoutError::invalid("--sim", 0, "a number of member accounts, e.g. --sim 29"));
            }
            let mut config = SimConfig::new(accounts, args.seed);
            config.faults = match args.faults {
                FaultProfile::None => Faults::default(),
                FaultProfile::Chaos => Faults::chaos(),
            };
            let sim = Arc::new(SimCloud::new(config));
            let (store, store_location) = match &args.store {
                Some(path) => (Arc::new(EmbeddedStore::open(path)?) as Arc<dyn RunStore>, path.display().to_string()),
                None => (Arc::new(MemoryStore::new()) as Arc<dyn RunStore>, "memory (simulator)".to_string()),
            };
            Ok(Backend { services: Services { org: sim.clone(), ic: sim, store }, store_location })
        }
        None => crate::aws::connect(args).await,
    }
}

/// The embedded store's default path: `<data dir>/sso-fanout/store.redb`.
pub fn default_store_path() -> Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("sso-fanout").join("store.redb"))
        .ok_or_else(|| FanoutError::Config("no data directory for this user; pass --store PATH".into()))
}
