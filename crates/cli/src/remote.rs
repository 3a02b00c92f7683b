//! The deployed system: start an execution of the state machine and follow it. Progress comes
//! from the execution history (the planner's and workers' outputs), so no table access is needed.

use crate::args::{AwsArgs, OutputFormat, StartArgs, StatusArgs};
use crate::commands::print_json;
use crate::output;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use sso_fanout_aws::AwsClients;
use sso_fanout_core::report::RunSummary;
use sso_fanout_core::{FanoutError, Result};
use std::io::IsTerminal;
use std::time::Duration;

const POLL: Duration = Duration::from_secs(2);

async fn sfn(aws: &AwsArgs) -> aws_sdk_sfn::Client {
    AwsClients::from_env(aws.profile.as_deref(), aws.region.as_deref()).await.sfn
}

fn sfn_error(api: &str, e: impl std::fmt::Display) -> FanoutError {
    FanoutError::Transient { api: api.into(), message: e.to_string() }
}

pub async fn start(args: StartArgs) -> Result<u8> {
    let mut request = args.request.to_request()?;
    request.dry_run |= args.dry_run;
    let client = sfn(&args.aws).await;
    let input = serde_json::to_string(&request).expect("request serializes");
    let started = client
        .start_execution()
        .state_machine_arn(&args.state_machine)
        .input(input)
        .set_name(args.name.clone())
        .send()
        .await
        .map_err(|e| sfn_error("StartExecution", aws_sdk_sfn::error::DisplayErrorContext(e)))?;
    let arn = started.execution_arn().to_string();
    if !args.wait {
        match args.output {
            OutputFormat::Json => print_json(&serde_json::json!({"executionArn": arn})),
            OutputFormat::Table => println!("started {arn}\n  follow it: sso-fanout status --wait {arn}"),
        }
        return Ok(0);
    }
    if args.output == OutputFormat::Table {
        eprintln!("started {arn}");
    }
    follow(&client, &arn, args.output).await
}

pub async fn status(args: StatusArgs) -> Result<u8> {
    let client = sfn(&args.aws).await;
    if args.wait {
        return follow(&client, &args.execution_arn, args.output).await;
    }
    let d = describe(&client, &args.execution_arn).await?;
    if *d.status() == ExecutionStatus::Running {
        match args.output {
            OutputFormat::Json => print_json(&serde_json::json!({"executionArn": args.execution_arn, "status": "RUNNING"})),
            OutputFormat::Table => println!("{} is RUNNING", args.execution_arn),
        }
        return Ok(0);
    }
    finish(&d, args.output)
}

async fn describe(client: &aws_sdk_sfn::Client, arn: &str) -> Result<aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput> {
    client
        .describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .map_err(|e| sfn_error("DescribeExecution", aws_sdk_sfn::error::DisplayErrorContext(e)))
}

/// Polls until the execution ends, showing batches done and accounts by outcome.
async fn follow(client: &aws_sdk_sfn::Client, arn: &str, out: OutputFormat) -> Result<u8> {
    let visible = out == OutputFormat::Table && std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(None, if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    loop {
        let d = describe(client, arn).await?;
        if *d.status() != ExecutionStatus::Running {
            bar.finish_and_clear();
            return finish(&d, out);
        }
        if let Ok(p) = progress(client, arn).await {
            bar.set_message(p);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// "run ... : 2/5 batches, 812 succeeded, 3 failed" from the Lambda outputs in the history.
async fn progress(client: &aws_sdk_sfn::Client, arn: &str) -> Result<String> {
    let mut pages = client.get_execution_history().execution_arn(arn).max_results(1000).into_paginator().send();
    let (mut run_id, mut total, mut done, mut ok, mut failed) = (String::from("planning"), 0usize, 0usize, 0u64, 0u64);
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sfn_error("GetExecutionHistory", aws_sdk_sfn::error::DisplayErrorContext(e)))?;
        for event in page.events() {
            if *event.r#type() != HistoryEventType::TaskSucceeded {
                continue;
            }
            let Some(output) = event.task_succeeded_event_details().and_then(|d| d.output()) else { continue };
            let payload = serde_json::from_str::<Value>(output).ok().and_then(|v| v.get("Payload").cloned()).unwrap_or(Value::Null);
            if let Some(batches) = payload.get("batches").and_then(Value::as_array) {
                run_id = payload["runId"].as_str().unwrap_or_default().to_string();
                total = batches.len();
            } else if payload.get("batch").is_some() {
                done += 1;
                ok += payload["succeeded"].as_u64().unwrap_or(0);
                failed += payload["failed"].as_u64().unwrap_or(0) + payload["timedOut"].as_u64().unwrap_or(0);
            }
        }
    }
    Ok(format!("{run_id}: {done}/{total} batches, {ok} succeeded, {failed} failed or timed out"))
}

fn finish(d: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput, out: OutputFormat) -> Result<u8> {
    let status = d.status().as_str().to_string();
    if *d.status() != ExecutionStatus::Succeeded {
        let error = d.error().unwrap_or("unknown").to_string();
        let cause = d.cause().map(cause_message).unwrap_or_default();
        if error == "InvalidRequest" {
            return Err(FanoutError::invalid("request", "(rejected by the planner)", cause));
        }
        match out {
            OutputFormat::Json => print_json(&serde_json::json!({"executionArn": d.execution_arn(), "status": status, "error": error, "cause": cause})),
            OutputFormat::Table => eprintln!("execution {status}: {error}: {cause}"),
        }
        return Ok(1);
    }
    let output: Value = d.output().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null);
    match serde_json::from_value::<RunSummary>(output.clone()) {
        Ok(summary) => {
            match out {
                OutputFormat::Json => print_json(&summary),
                OutputFormat::Table => print!("{}", output::summary(&summary)),
            }
            Ok(summary.exit_code() as u8)
        }
        // A dry run's output is the plan preview.
        Err(_) => {
            print_json(&output);
            Ok(0)
        }
    }
}

/// Lambda errors reach Step Functions as `{"errorType", "errorMessage", ...}` in the cause.
fn cause_message(cause: &str) -> String {
    serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| v.get("errorMessage").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| cause.to_string())
}
