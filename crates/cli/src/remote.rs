//! The deployed system: start an execution of the state machine and follow it. Progress comes
//! from the execution history (the planner's and workers' outputs), so no table access is needed.

use crate::args::{AwsArgs, OutputFormat, StartArgs, StatusArgs};
use crate::exit;
use crate::io::Io;
use crate::output;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use sso_fanout_aws::errors::classify;
use sso_fanout_aws::AwsClients;
use sso_fanout_core::contract::{PlannerOutput, WorkerOutput};
use sso_fanout_core::report::RunSummary;
use sso_fanout_core::{FanoutError, Result};
use std::time::Duration;
use tokio::time::Instant;

const POLL: Duration = Duration::from_secs(2);
/// How often `--wait` writes a progress line when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

async fn sfn(aws: &AwsArgs) -> aws_sdk_sfn::Client {
    AwsClients::from_env(aws.profile.as_deref(), aws.region.as_deref()).await.sfn
}

/// An ARN Step Functions rejects or does not know is the user's input to fix, not a fault.
fn arn_error(field: &str, arn: &str, e: FanoutError) -> FanoutError {
    match e {
        FanoutError::Validation { message, .. } | FanoutError::NotFound { hint: message, .. } => {
            FanoutError::invalid(field, arn, format!("an ARN that Step Functions knows in this account and region ({message})"))
        }
        other => other,
    }
}

pub async fn start(args: StartArgs, io: &mut Io) -> Result<u8> {
    if let Some(path) = &args.request.plan {
        return Err(FanoutError::invalid("--plan", path.display(), "a flag of `run` (a saved plan is applied in-process); `start` sends --rules FILE or a request"));
    }
    let mut document = args.request.to_document()?;
    if args.dry_run {
        document["dryRun"] = true.into();
    }
    // Checked here as the planner will check it: a bad input never starts an execution.
    sso_fanout_core::request::RunInput::from_value(document.clone())?;
    let client = sfn(&args.aws).await;
    let input = document.to_string();
    let started = client
        .start_execution()
        .state_machine_arn(&args.state_machine)
        .input(input)
        .set_name(args.name.clone())
        .send()
        .await
        .map_err(|e| arn_error("--state-machine", &args.state_machine, classify("StartExecution", e)))?;
    let arn = started.execution_arn().to_string();
    if !args.wait {
        match args.output {
            OutputFormat::Json => io.json(&serde_json::json!({"executionArn": arn})),
            OutputFormat::Table | OutputFormat::Markdown => io.out.line(format!("started {arn}\n  follow it: sso-fanout status --wait {arn}")),
        }
        return Ok(exit::OK);
    }
    io.err.line(format!("started {arn}"));
    follow(&client, &arn, args.output, io).await
}

pub async fn status(args: StatusArgs, io: &mut Io) -> Result<u8> {
    let client = sfn(&args.aws).await;
    if args.wait {
        return follow(&client, &args.execution_arn, args.output, io).await;
    }
    let d = describe(&client, &args.execution_arn).await?;
    if *d.status() == ExecutionStatus::Running {
        match args.output {
            OutputFormat::Json => io.json(&serde_json::json!({"executionArn": args.execution_arn, "status": "RUNNING"})),
            OutputFormat::Table | OutputFormat::Markdown => io.out.line(format!("{} is RUNNING", args.execution_arn)),
        }
        return Ok(exit::OK);
    }
    finish(&d, args.output, io)
}

async fn describe(client: &aws_sdk_sfn::Client, arn: &str) -> Result<aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput> {
    client
        .describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .map_err(|e| arn_error("EXECUTION_ARN", arn, classify("DescribeExecution", e)))
}

/// Polls until the execution ends, showing batches done and accounts by outcome: a spinner on
/// a terminal, a line every `LOG_EVERY` otherwise.
async fn follow(client: &aws_sdk_sfn::Client, arn: &str, out: OutputFormat, io: &Io) -> Result<u8> {
    let bar = io.err_is_terminal.then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let started = Instant::now();
    let mut logged = started;
    loop {
        let d = describe(client, arn).await?;
        if *d.status() != ExecutionStatus::Running {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return finish(&d, out, io);
        }
        if let Ok(p) = progress(client, arn).await {
            match &bar {
                Some(bar) => bar.set_message(p),
                None if logged.elapsed() >= LOG_EVERY => {
                    logged = Instant::now();
                    io.err.line(format!("progress: {p} ({} elapsed)", output::secs(started.elapsed().as_secs_f64())));
                }
                None => {}
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// "run ... : 2/5 batches, 812 succeeded, 3 failed" from the Lambda outputs in the history
/// (the planner's and workers' outputs, read as the state machine contract types).
async fn progress(client: &aws_sdk_sfn::Client, arn: &str) -> Result<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct LambdaInvokeResult<T> {
        payload: T,
    }
    let mut pages = client.get_execution_history().execution_arn(arn).max_results(1000).into_paginator().send();
    let (mut run_id, mut total, mut done, mut ok, mut failed) = (String::from("planning"), 0usize, 0usize, 0usize, 0usize);
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify("GetExecutionHistory", e))?;
        for event in page.events() {
            if *event.r#type() != HistoryEventType::TaskSucceeded {
                continue;
            }
            let Some(output) = event.task_succeeded_event_details().and_then(|d| d.output()) else { continue };
            if let Ok(planned) = serde_json::from_str::<LambdaInvokeResult<PlannerOutput>>(output) {
                run_id = planned.payload.run_id;
                total = planned.payload.batches.len();
            } else if let Ok(worker) = serde_json::from_str::<LambdaInvokeResult<WorkerOutput>>(output) {
                done += 1;
                ok += worker.payload.succeeded;
                failed += worker.payload.failed + worker.payload.timed_out + worker.payload.not_started;
            }
        }
    }
    Ok(format!("{run_id}: {done}/{total} batches, {ok} succeeded, {failed} failed or timed out"))
}

fn finish(d: &aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput, out: OutputFormat, io: &Io) -> Result<u8> {
    let status = d.status().as_str().to_string();
    let arn = d.execution_arn();
    if *d.status() != ExecutionStatus::Succeeded {
        let error = d.error().unwrap_or("unknown").to_string();
        let cause = d.cause().map(cause_message).unwrap_or_default();
        if error == "InvalidRequest" {
            return Err(FanoutError::invalid("request", "(rejected by the planner)", cause));
        }
        match out {
            OutputFormat::Json => io.json(&serde_json::json!({"executionArn": arn, "status": status, "error": error, "cause": cause})),
            OutputFormat::Table | OutputFormat::Markdown => io.err.line(format!("execution {arn} {status}: {error}: {cause}")),
        }
        return Ok(exit::REJECTED);
    }
    let output: Value = d.output().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null);
    match serde_json::from_value::<RunSummary>(output.clone()) {
        Ok(summary) => {
            match out {
                OutputFormat::Json => {
                    let mut doc = serde_json::to_value(&summary).expect("summary serializes");
                    doc["executionArn"] = arn.into();
                    io.json(&doc);
                }
                OutputFormat::Table | OutputFormat::Markdown => {
                    io.out.write(&output::summary(&summary));
                    io.out.line(format!(
                        "  execution {arn}; per-account results: `sso-fanout report {} --table TABLE`, TABLE being the stack's TableName output",
                        summary.run_id
                    ));
                }
            }
            Ok(summary.exit_code() as u8)
        }
        // A dry run's output is the plan preview.
        Err(_) => {
            let mut doc = output;
            if let Some(map) = doc.as_object_mut() {
                map.insert("executionArn".into(), arn.into());
            }
            io.json(&doc);
            Ok(exit::OK)
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
