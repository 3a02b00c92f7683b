//! Command-line arguments. Request flags build the same `RunRequest` JSON that Step Functions,
//! schedules and CI send, so `--request FILE` and flags are interchangeable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use sso_fanout_core::request::RunInput;
use sso_fanout_core::rules::RulesDocument;
use sso_fanout_core::{FanoutError, Result};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  # Try everything on a simulated organization of 29 accounts (no AWS account needed)
  sso-fanout run --sim 29 --operation assign --permission-set AdministratorAccess \\
      --group PlatformAdmins --filter 'prod-*'

  # Preview, then do it for real (standard AWS credential chain)
  sso-fanout plan --profile mgmt --operation assign --permission-set AdministratorAccess \\
      --group PlatformAdmins --ou ou-ab12-cd34ef56 --exclude 123456789012
  sso-fanout run --request examples/assign-prod.json --output json

  # The exact document a schedule or CI pipeline sends, from stdin
  cat request.json | sso-fanout plan --request -

  # The organization as the planner sees it: OU ids for --ou, tags for --tag
  sso-fanout org --sim 29

  # Desired state: a rules document (YAML or JSON; README \"Desired state\")
  sso-fanout plan --sim 29 --rules examples/rules-sim.yaml              # drift report
  sso-fanout plan --rules access.yaml --output markdown --out plan.json  # for a CI summary
  sso-fanout run --plan plan.json                                        # exactly what was reviewed
  sso-fanout run --rules access.yaml --prune --max-deletes 10 --document-name baseline
  sso-fanout run --reconcile baseline                                    # the stored document again

  # Compare with the seed's strategies on the simulator
  sso-fanout bench --accounts 29,500,5000 --seed 7

Exit codes: 0 every account succeeded or was already as requested; 2 some accounts failed or
timed out (the summary lists them); 1 the request was rejected (bad input, usage error) or the
run could not start, and nothing was changed; 130 interrupted (Ctrl-C): the summary covers what
was done, and re-running the same request resumes. `plan --rules`: 0 no drift, 2 drift, 1 error.";

#[derive(Parser, Debug)]
#[command(
    name = "sso-fanout",
    version,
    about = "Assign or revoke an IAM Identity Center permission set across many AWS accounts, \
             as fast as the Identity Center quotas allow, and verify that every assignment landed.",
    after_long_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Dry run: resolve names, select accounts, diff against existing assignments, and show
    /// the actions, the tier, the binding quota and the estimate. Changes nothing.
    Plan(RunArgs),
    /// Plan, then execute in-process with live progress, verifying every assignment.
    Run(RunArgs),
    /// Compare sso-fanout with the seed's strategies on the simulated organization.
    Bench(BenchArgs),
    /// Show or refresh the account cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// The organization as the planner sees it: OUs with their ids, accounts with status, OU
    /// path and tags. Use it to write --ou, --tag and --filter.
    Org(OrgArgs),
    /// Start an execution of the deployed state machine with this request (as the console,
    /// a schedule or CI would); with --wait, follow it to the end.
    Start(StartArgs),
    /// State and, once finished, the summary of an execution.
    Status(StatusArgs),
    /// The simulated organization and Identity Center as a local AWS endpoint.
    Sim {
        #[command(subcommand)]
        action: SimAction,
    },
    /// Show a past run's summary, or list recent runs (embedded store, or --table).
    Report {
        /// Run id; without it, the most recent runs are listed.
        run_id: Option<String>,
        #[command(flatten)]
        backend: BackendArgs,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Rules documents stored by applied rules runs (what `--reconcile NAME` and the stack's
    /// schedule apply again), for this organization and instance; with NAME, that document.
    Documents {
        /// A stored document's name; without it, the stored documents are listed.
        name: Option<String>,
        #[command(flatten)]
        backend: BackendArgs,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

#[derive(Subcommand, Debug)]
pub enum SimAction {
    /// Serve the simulated organization on 127.0.0.1 over the AWS JSON 1.1 protocol, with the
    /// Identity Center quotas in real time; point any SDK at it with AWS_ENDPOINT_URL.
    #[command(after_long_help = SIM_SERVE_HELP)]
    Serve(SimServeArgs),
}

const SIM_SERVE_HELP: &str = "\
Operations (X-Amz-Target):
  sso-admin (SWBExternalService.*, 20 req/s, 15 outstanding operations, one per account):
    ListInstances, ListPermissionSets, DescribePermissionSet, CreateAccountAssignment,
    DeleteAccountAssignment, DescribeAccountAssignmentCreationStatus,
    DescribeAccountAssignmentDeletionStatus, ListAccountAssignmentCreationStatus,
    ListAccountAssignmentDeletionStatus, ListAccountAssignments, ListAccountAssignmentsForPrincipal
  Organizations (AWSOrganizationsV20161128.*): DescribeOrganization, DescribeAccount, ListRoots,
    ListOrganizationalUnitsForParent, ListAccounts, ListAccountsForParent, ListParents,
    ListTagsForResource
  Identity Store (AWSIdentityStore.*): ListGroups (Filters too), ListUsers, DescribeGroup,
    DescribeUser, GetGroupId, GetUserId

Any SigV4 credentials are accepted. GET /_sim/stats: calls by operation, throttled, conflicts,
violations {outstanding, rate (strict one-second sliding window)}, outstanding, first_call_s,
last_finished_s. GET /_sim/assignments: the assignments held now.

Example:
  sso-fanout sim serve --accounts 29 --seed 7 --port 4599 &
  AWS_ENDPOINT_URL=http://127.0.0.1:4599 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \\
    sso-fanout run --operation assign --permission-set AdministratorAccess --group PlatformAdmins --filter '*'";

#[derive(Args, Debug)]
pub struct SimServeArgs {
    /// Member accounts of the simulated organization (the management account comes on top).
    #[arg(long, default_value_t = 29)]
    pub accounts: usize,
    /// Seed (same seed, same organization and latencies as `--sim N --seed S`).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Faults injected.
    #[arg(long, value_enum, default_value_t = FaultProfile::None)]
    pub faults: FaultProfile,
    /// Provisioning latency, `MEDIAN_S,P99_S` [default: 3,15].
    #[arg(long, value_name = "MEDIAN_S,P99_S", value_parser = parse_latency)]
    pub latency: Option<sso_fanout_core::tiers::LatencyModel>,
    /// A clean organization: every account ACTIVE, nothing assigned yet (as the bench uses).
    #[arg(long)]
    pub clean: bool,
    /// Port on 127.0.0.1 (0: any free port; the endpoint is printed).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

#[derive(Subcommand, Debug)]
pub enum CacheAction {
    /// Age, organization and account counts of the cached snapshot.
    Status(CacheArgs),
    /// Re-read the organization (OU tree, accounts, tags) and store it.
    Refresh(CacheArgs),
}

#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct OrgArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Re-read the organization even if the account cache is fresh.
    #[arg(long)]
    pub refresh_cache: bool,
    /// Only the OU tree (no account list).
    #[arg(long)]
    pub ous_only: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

impl Command {
    /// The output format the command was asked for (errors are printed in it too).
    pub fn output(&self) -> OutputFormat {
        match self {
            Command::Plan(a) | Command::Run(a) => a.output,
            Command::Bench(b) => b.output,
            Command::Cache { action: CacheAction::Status(c) | CacheAction::Refresh(c) } => c.output,
            Command::Org(o) => o.output,
            Command::Report { output, .. } | Command::Documents { output, .. } => *output,
            Command::Sim { .. } => OutputFormat::Table,
            Command::Start(a) => a.output,
            Command::Status(a) => a.output,
        }
    }

    /// Whether the command works on the simulated organization.
    pub fn simulated(&self) -> bool {
        match self {
            Command::Plan(a) | Command::Run(a) => a.backend.sim.is_some(),
            Command::Bench(_) => true,
            Command::Cache { action: CacheAction::Status(c) | CacheAction::Refresh(c) } => c.backend.sim.is_some(),
            Command::Org(o) => o.backend.sim.is_some(),
            Command::Report { backend, .. } | Command::Documents { backend, .. } => backend.sim.is_some(),
            Command::Start(_) | Command::Status(_) | Command::Sim { .. } => false,
        }
    }

    /// Whether the command runs on a paused (virtual) clock.
    pub fn virtual_time(&self) -> bool {
        matches!(self, Command::Plan(a) | Command::Run(a) if a.virtual_time)
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human-readable tables and a progress bar (on stderr).
    Table,
    /// One JSON document on stdout, for scripts.
    Json,
    /// `plan` only: the drift report as Markdown, for a CI job summary or a pull-request comment.
    Markdown,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scenario {
    /// One run per size: sso-fanout beside the models of the seed's strategies.
    #[default]
    Single,
    /// Three sso-fanout runs of the size started 0, 30 and 60 s apart on one instance, each with
    /// another permission set (a schedule, a CI job and a laptop at once): each owning the
    /// budget (`independent`) beside one shared quota ledger (`shared`).
    Concurrent,
    /// One run whose worker dies a third of the way through and is re-driven at once, without
    /// and with the shared quota ledger.
    Crash,
    /// A 40-rule document applied with prune: several operations per account, one at a time
    /// per account; the bound counts the longest per-account chain too.
    Reconcile,
    /// The shared quota under faults, one row each: runs ending with operations in flight,
    /// processes killed (also right after AWS accepted a create), create answers lost, clocks
    /// skewed or an hour ahead, heartbeats failing, twin workers, ledger answers lost, a ledger
    /// outage; the invariants' counters (all 0) and the ledger's DynamoDB write units per change.
    Faults,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultProfile {
    #[default]
    None,
    /// 3% 5xx, 3% late FAILED, two throttle storms, 1% very slow operations.
    Chaos,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// List every target account (default: the first 40 in the table output).
    #[arg(long)]
    pub all: bool,
    /// `plan` only: also save the plan as JSON to FILE, to apply exactly it later with
    /// `run --plan FILE` (refused then if the live state has changed since).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// With --sim: run on a virtual clock (finishes at once; timings are still simulated).
    #[arg(long, requires = "sim")]
    pub virtual_time: bool,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

/// What the run may spend of Identity Center's published limits (15 outstanding assignment
/// operations, 20 requests/s for all its APIs); above them is refused.
#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Quota budget (published limits: 15 outstanding operations, 20 req/s)")]
pub struct BudgetArgs {
    /// Assignment operations outstanding at once [default: 15, the published limit].
    #[arg(long, value_name = "N", env = "SSO_FANOUT_MAX_OUTSTANDING")]
    pub max_outstanding: Option<u32>,
    /// sso-admin requests per second [default: 18, 90% of the published 20].
    #[arg(long, value_name = "R", env = "SSO_FANOUT_REQUESTS_PER_SECOND")]
    pub requests_per_second: Option<f64>,
}

impl BudgetArgs {
    /// The planner's settings with this budget, for a run this process executes.
    pub fn planner_config(&self) -> Result<sso_fanout_core::planner::PlannerConfig> {
        let mut config = sso_fanout_core::planner::PlannerConfig::in_process();
        config.budget = sso_fanout_core::tiers::QuotaBudget::with_overrides(
            &config.limits,
            self.max_outstanding,
            self.requests_per_second,
            ["--max-outstanding (SSO_FANOUT_MAX_OUTSTANDING)", "--requests-per-second (SSO_FANOUT_REQUESTS_PER_SECOND)"],
        )?;
        Ok(config)
    }
}

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Request (or give it all as JSON with --request)")]
pub struct RequestArgs {
    /// The run request as JSON: a file, or `-` for stdin. Same document as the Step Functions
    /// input; excludes the request flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["operation", "permission_set", "group", "user", "principal_id", "rules", "reconcile"])]
    pub request: Option<PathBuf>,
    /// A rules document (YAML or JSON; `-` for stdin): the desired state to plan (drift
    /// report) or apply. See README "Desired state". Excludes the single-request flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["operation", "permission_set", "group", "user", "principal_id", "filter", "accounts", "ous", "tags", "exclude", "reconcile"])]
    pub rules: Option<PathBuf>,
    /// Plan or apply the document stored under NAME again (what a schedule sends:
    /// `{"reconcile": NAME}`), with its stored --prune/--max-deletes unless given here.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["operation", "permission_set", "group", "user", "principal_id", "filter", "accounts", "ous", "tags", "exclude", "document_name", "replace_document", "refresh_cache", "batch_size", "concurrency", "account_timeout", "max_retries"])]
    pub reconcile: Option<String>,
    /// With --rules/--reconcile: also delete assignments inside the document's `managed` scope
    /// that no rule declares (never on the management or protected accounts).
    #[arg(long, conflicts_with = "no_prune")]
    pub prune: bool,
    /// With --reconcile: do not prune, whatever the stored document says.
    #[arg(long)]
    pub no_prune: bool,
    /// With --prune: refuse the whole run when it would delete more than N assignments
    /// [default: 20].
    #[arg(long, value_name = "N", conflicts_with = "no_prune")]
    pub max_deletes: Option<u32>,
    /// `run` only: apply a plan saved by `plan --out FILE`, exactly as reviewed. Planned again
    /// first; refused with nothing changed if the changes would now differ. Prune and its limit
    /// are part of the plan: give them to `plan`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["request", "rules", "reconcile", "operation", "permission_set", "group", "user", "principal_id", "prune", "no_prune", "max_deletes", "document_name", "replace_document", "filter", "accounts", "ous", "tags", "exclude", "refresh_cache", "batch_size", "concurrency", "account_timeout", "max_retries"])]
    pub plan: Option<PathBuf>,
    /// With --rules: the name the applied document is stored under, for `--reconcile NAME`
    /// and schedules [default: default]. The plan says what is stored there now.
    #[arg(long, value_name = "NAME")]
    pub document_name: Option<String>,
    /// With --rules: applying may replace a different document stored under that name (refused
    /// otherwise: a schedule reconciling the name would apply this one from then on).
    #[arg(long)]
    pub replace_document: bool,
    /// assign or revoke.
    #[arg(long, value_enum, required_unless_present_any = ["request", "rules", "reconcile", "plan"])]
    pub operation: Option<OperationArg>,
    /// Permission set name (e.g. AdministratorAccess) or ARN.
    #[arg(long, value_name = "NAME|ARN", required_unless_present_any = ["request", "rules", "reconcile", "plan"])]
    pub permission_set: Option<String>,
    /// Group display name in the Identity Store.
    #[arg(long, value_name = "NAME", group = "principal")]
    pub group: Option<String>,
    /// User name in the Identity Store.
    #[arg(long, value_name = "NAME", group = "principal")]
    pub user: Option<String>,
    /// Principal id (Identity Store UUID); needs --principal-type.
    #[arg(long, value_name = "ID", group = "principal", requires = "principal_type")]
    pub principal_id: Option<String>,
    #[arg(long, value_enum)]
    pub principal_type: Option<PrincipalTypeArg>,
    /// Account-name wildcard (`*`, `prod-*`, `*-sandbox`) or `tag:Key=Value`.
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// Explicit 12-digit account id (repeatable); the only way to target the management account.
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// OU id, recursive (repeatable).
    #[arg(long = "ou", value_name = "OU_ID")]
    pub ous: Vec<String>,
    /// Tag that must match, Key=Value (repeatable; all must match).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Account id to leave out (repeatable).
    #[arg(long = "exclude", value_name = "ID")]
    pub exclude: Vec<String>,
    /// Re-read the organization even if the account cache is fresh.
    #[arg(long)]
    pub refresh_cache: bool,
    /// Accounts per worker batch (clamped to what fits the worker's time budget).
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Assignment operations in flight for this run (clamped to the quota budget).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Seconds an account may take from its first call to its final state.
    #[arg(long, value_name = "SECONDS")]
    pub account_timeout: Option<u32>,
    /// Retries for conflicts and 5xx (throttling is retried until the timeout).
    #[arg(long)]
    pub max_retries: Option<u32>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum OperationArg {
    Assign,
    Revoke,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
#[value(rename_all = "UPPER")]
pub enum PrincipalTypeArg {
    Group,
    User,
}

#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Where to run")]
pub struct BackendArgs {
    /// Use a simulated organization of N member accounts instead of AWS.
    #[arg(long, value_name = "N")]
    pub sim: Option<usize>,
    /// Seed of the simulated organization (same seed, same organization and latencies).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Faults injected into the simulator.
    #[arg(long, value_enum, default_value_t = FaultProfile::None)]
    pub faults: FaultProfile,
    /// With --sim: provisioning latency, `MEDIAN_S,P99_S` [default: 3,15].
    #[arg(long, value_name = "MEDIAN_S,P99_S", value_parser = parse_latency, requires = "sim")]
    pub latency: Option<sso_fanout_core::tiers::LatencyModel>,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Embedded store file (default: sso-fanout/store.redb in the user's data directory; with
    /// --sim: in memory).
    #[arg(long, value_name = "PATH", env = "SSO_FANOUT_STORE")]
    pub store: Option<PathBuf>,
    /// Use this DynamoDB table (the deployed stack's) as the store instead; its quota ledger is
    /// then the one the stack's executions share.
    #[arg(long, value_name = "TABLE", conflicts_with_all = ["store", "sim"])]
    pub table: Option<String>,
    /// The quota ledger every sso-fanout process on this machine shares, whatever its store
    /// (default: sso-fanout/quota.json in the user's data directory; not used with --table,
    /// whose table holds the stack's).
    #[arg(long, value_name = "PATH", env = "SSO_FANOUT_QUOTA_FILE", conflicts_with = "table")]
    pub quota_file: Option<PathBuf>,
    /// Identity Center instance ARN (default: the only instance `ListInstances` returns).
    #[arg(long, value_name = "ARN", conflicts_with = "sim")]
    pub instance_arn: Option<String>,
    /// Identity Store id (default: the instance's).
    #[arg(long, value_name = "ID", conflicts_with = "sim")]
    pub identity_store_id: Option<String>,
}

#[derive(Args, Debug, Default, Clone)]
pub struct AwsArgs {
    /// AWS profile (standard credential chain otherwise).
    #[arg(long, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// The deployed state machine (stack output StateMachineArn).
    #[arg(long, value_name = "ARN", env = "SSO_FANOUT_STATE_MACHINE")]
    pub state_machine: String,
    /// Execution name (default: generated by Step Functions).
    #[arg(long)]
    pub name: Option<String>,
    /// Only plan: the execution's output is the plan; nothing is written to Identity Center.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait for the execution, with live progress, and exit like `run` (0 / 2 / 1).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Execution ARN (as printed by `start`).
    pub execution_arn: String,
    /// Wait until it finishes.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Organization sizes (member accounts), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "29,500,5000")]
    pub accounts: Vec<usize>,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = FaultProfile::None)]
    pub faults: FaultProfile,
    /// Force sso-fanout's batch size (to measure the seed's 50-account chunks, say).
    #[arg(long)]
    pub batch_size: Option<std::num::NonZeroU32>,
    /// Repeat with seeds SEED, SEED+1, ... and summarize each size and strategy (mean, min, max).
    #[arg(long, default_value_t = 1)]
    pub repeat: u64,
    /// Simulated provisioning latency, `MEDIAN_S,P99_S` (lognormal) [default: 3,15, an
    /// assumption: nobody publishes it]. Repeat it to measure several regimes in one table:
    /// `--latency 1,5 --latency 3,15 --latency 10,50`.
    #[arg(long, value_name = "MEDIAN_S,P99_S", value_parser = parse_latency)]
    pub latency: Vec<sso_fanout_core::tiers::LatencyModel>,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::Single)]
    pub scenario: Scenario,
    /// Run only sso-fanout (skip the seed's strategies).
    #[arg(long)]
    pub only_sso_fanout: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

impl RequestArgs {
    /// What to run, from `--rules`, `--reconcile`, `--request` or the flags: always the JSON
    /// document the state machine takes, parsed by the same code (errors name the field).
    pub fn to_input(&self) -> Result<RunInput> {
        RunInput::from_value(self.to_document()?)
    }

    /// The state machine input these arguments describe.
    pub fn to_document(&self) -> Result<Value> {
        let mut document = match (&self.rules, &self.reconcile, &self.request) {
            (Some(path), _, _) => {
                // YAML or JSON; its errors carry line and column and name the rule.
                let rules = RulesDocument::parse(&read_input(path, "--rules")?)?;
                json!({ "rules": rules })
            }
            (_, Some(name), _) => json!({ "reconcile": name }),
            (_, _, Some(path)) => {
                // Read as text: syntax errors carry line and column, a key given twice is refused.
                let document = sso_fanout_core::document::json(&read_input(path, "--request")?, "request")?;
                RunInput::from_value(document.clone())?;
                document
            }
            _ => self.flags_document()?,
        };
        let rules_input = document.get("rules").is_some() || document.get("reconcile").is_some();
        if self.max_deletes.is_some() && !self.prune && document.get("rules").is_some() {
            return Err(FanoutError::invalid("--max-deletes", self.max_deletes.unwrap_or_default(), "a limit of a prune: add --prune (a rules run without it deletes nothing)"));
        }
        let prune = match (self.prune, self.no_prune) {
            (true, _) => Some(Value::Bool(true)),
            (_, true) => Some(Value::Bool(false)),
            _ => None,
        };
        let rules_options = [
            ("--prune/--no-prune", "prune", prune),
            ("--max-deletes", "maxDeletes", self.max_deletes.map(Value::from)),
            ("--document-name", "name", self.document_name.clone().map(Value::from)),
            ("--replace-document", "replaceDocument", self.replace_document.then_some(Value::Bool(true))),
        ];
        for (flag, key, value) in rules_options {
            let Some(value) = value else { continue };
            if !rules_input {
                return Err(FanoutError::invalid(flag, value, "a flag of rules runs: use it with --rules FILE or --reconcile NAME"));
            }
            document[key] = value;
        }
        // Flags that only tune a run may accompany --request.
        if self.refresh_cache {
            document["refreshCache"] = true.into();
        }
        for (key, value) in [
            ("batchSize", self.batch_size),
            ("concurrency", self.concurrency),
            ("accountTimeoutSeconds", self.account_timeout),
            ("maxRetries", self.max_retries),
        ] {
            if let Some(v) = value {
                if !document["tuning"].is_object() {
                    document["tuning"] = serde_json::json!({});
                }
                document["tuning"][key] = v.into();
            }
        }
        Ok(document)
    }

    /// The request document the flags describe.
    fn flags_document(&self) -> Result<Value> {
        let operation = match self.operation {
            Some(OperationArg::Assign) => "assign",
            Some(OperationArg::Revoke) => "revoke",
            None => return Err(FanoutError::invalid("--operation", "(missing)", "assign or revoke")),
        };
        let principal = match (&self.group, &self.user, &self.principal_id, self.principal_type) {
            (Some(g), _, _, _) => json!({"type": "GROUP", "name": g}),
            (_, Some(u), _, _) => json!({"type": "USER", "name": u}),
            (_, _, Some(id), Some(t)) => json!({"type": match t { PrincipalTypeArg::Group => "GROUP", PrincipalTypeArg::User => "USER" }, "id": id}),
            _ => {
                return Err(FanoutError::invalid(
                    "--group/--user/--principal-id",
                    "(missing)",
                    "one principal: --group NAME, --user NAME, or --principal-id ID --principal-type GROUP|USER",
                ))
            }
        };
        let mut tags = serde_json::Map::new();
        for t in &self.tags {
            let (k, v) = t.split_once('=').ok_or_else(|| FanoutError::invalid("--tag", t, "KEY=VALUE, e.g. --tag env=prod"))?;
            match tags.get(k).and_then(Value::as_str) {
                Some(first) if first != v => {
                    // Every tag must match: two values of one key match no account.
                    return Err(FanoutError::invalid(
                        "--tag",
                        t,
                        format!("one value per tag key: --tag {k}={first} is given too, and no account carries both (all tags must match)"),
                    ));
                }
                _ => {
                    tags.insert(k.to_string(), v.into());
                }
            }
        }
        let mut targets = json!({"accounts": self.accounts, "ous": self.ous, "tags": tags, "exclude": self.exclude});
        if let Some(filter) = &self.filter {
            targets["filter"] = filter.as_str().into();
        }
        Ok(json!({
            "operation": operation,
            "permissionSet": self.permission_set.clone().unwrap_or_default(),
            "principal": principal,
            "targets": targets,
        }))
    }
}

/// `MEDIAN_S,P99_S`, e.g. `1,5` or `3,15`: positive seconds, p99 at least the median.
fn parse_latency(text: &str) -> std::result::Result<sso_fanout_core::tiers::LatencyModel, String> {
    let (m, p) = text.split_once(',').ok_or("give MEDIAN_S,P99_S in seconds, e.g. 3,15")?;
    let number = |t: &str| t.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0);
    match (number(m), number(p)) {
        (Some(median_s), Some(p99_s)) if p99_s >= median_s => Ok(sso_fanout_core::tiers::LatencyModel { median_s, p99_s, samples: 0 }),
        _ => Err(format!("`{text}`: give MEDIAN_S,P99_S as positive seconds with p99 >= median, e.g. 3,15")),
    }
}

fn read_input(path: &PathBuf, flag: &str) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    let outcome = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    outcome.map_err(|e| FanoutError::invalid(flag, path.display(), format!("a readable file ({e})")))?;
    Ok(text)
}
