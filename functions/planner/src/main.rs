//! Planner Lambda: run request in, plan (batch references, Map concurrency, estimate) out.
use fanout_lambda::{handlers, init_logging, serve, LambdaConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_logging();
    let config = LambdaConfig::from_env()?;
    let services = config.services().await;
    serve(|event| handlers::plan(&services, &config.planner, event)).await
}
