//! Real AWS (or an emulator via AWS_ENDPOINT_URL): adapters from `sso-fanout-aws`.

use crate::args::BackendArgs;
use crate::backend::Backend;
use sso_fanout_core::{FanoutError, Result};

pub async fn connect(_args: &BackendArgs) -> Result<Backend> {
    Err(FanoutError::Config("the AWS backend is not wired into the CLI yet; use --sim N".into()))
}
