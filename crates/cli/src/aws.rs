//! Real AWS, or an emulator through the standard `AWS_ENDPOINT_URL[_<SERVICE>]` variables: the
//! adapters of `sso-fanout-aws`, with the embedded store by default or DynamoDB with `--table`.

use crate::args::BackendArgs;
use crate::backend::{default_store_path, Backend};
use sso_fanout_aws::{AwsClients, AwsIdentityCenter, AwsOrgDirectory, DynamoStore, IdentityCenterConfig};
use sso_fanout_core::pipeline::Services;
use sso_fanout_core::store::{EmbeddedStore, RunStore};
use sso_fanout_core::Result;
use std::sync::Arc;

pub async fn connect(args: &BackendArgs) -> Result<Backend> {
    let clients = AwsClients::from_env(args.aws.profile.as_deref(), args.aws.region.as_deref()).await;
    let (store, store_location): (Arc<dyn RunStore>, String) = match (&args.table, &args.store) {
        (Some(table), _) => (Arc::new(DynamoStore::new(clients.dynamodb.clone(), table.clone())), format!("DynamoDB table {table}")),
        (None, Some(path)) => (Arc::new(EmbeddedStore::open(path)?), path.display().to_string()),
        (None, None) => {
            let path = default_store_path()?;
            (Arc::new(EmbeddedStore::open(&path)?), path.display().to_string())
        }
    };
    let identity_center = IdentityCenterConfig { instance_arn: args.instance_arn.clone(), identity_store_id: args.identity_store_id.clone() };
    let services = Services {
        org: Arc::new(AwsOrgDirectory::new(clients.organizations.clone())),
        ic: Arc::new(AwsIdentityCenter::from_clients(&clients, identity_center)),
        store,
    };
    Ok(Backend { services, store_location })
}
