//! `RunStore` on one DynamoDB table (single-table design; see `crates/aws/TABLE.md`).
//!
//! Large values (the organization snapshot, a plan's skipped list and batches, a summary with
//! thousands of failures) are split into parts of at most `part_bytes` (300 KB by default) so
//! no item comes near DynamoDB's 400 KB limit, and reassembled on read.

use crate::errors::{error_code, store_error};
use crate::util::unique_suffix;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use serde::{de::DeserializeOwned, Serialize};
use sso_fanout_core::model::{AccountResult, OrgSnapshot, Scope};
use sso_fanout_core::clock::unix_now;
use sso_fanout_core::plan::{Plan, PlanItem};
use sso_fanout_core::report::RunSummary;
use sso_fanout_core::retry::CONTENDED_WRITES;
use sso_fanout_core::desired::StoredDocument;
use sso_fanout_core::store::{AccountCache, DocumentStore, LatencyHistory, RunLog, RunRecord, RunStatus, DEFAULT_RETENTION_DAYS, LATENCY_SAMPLES_KEPT};
use sso_fanout_core::{FanoutError, Result};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
/// TTL attribute (unix seconds).
pub const TTL_ATTRIBUTE: &str = "expiresAt";
/// Largest part of a split value; items stay well below DynamoDB's 400 KB.
pub const DEFAULT_PART_BYTES: usize = 300_000;

const CURRENT_SK: &str = "CURRENT";
const RUNS_PK: &str = "RUNS";
const META_SK: &str = "META";
const LATENCY_SK: &str = "SAMPLES";

pub struct DynamoStore {
    client: Client,
    table: String,
    retention_days: u32,
    part_bytes: usize,
    page_size: Option<i32>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
            retention_days: DEFAULT_RETENTION_DAYS,
            part_bytes: DEFAULT_PART_BYTES,
            page_size: None,
        }
    }

    /// Runs, their results and the run index expire (DynamoDB TTL) this many days after writing.
    pub fn with_retention_days(mut self, days: u32) -> DynamoStore {
        self.retention_days = days.max(1);
        self
    }

    /// Split values into parts of at most `bytes` (tests use small parts).
    pub fn with_part_bytes(mut self, bytes: usize) -> DynamoStore {
        self.part_bytes = bytes.max(16);
        self
    }

    /// Query page size (`Limit`); unset, DynamoDB pages at 1 MB. Tests set it to see paging.
    pub fn with_page_size(mut self, items: i32) -> DynamoStore {
        self.page_size = Some(items.max(1));
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn expires_at(&self, from: u64) -> u64 {
        from + self.retention_days as u64 * 86_400
    }

    async fn put(&self, item: Item, condition: Option<&str>, values: &[(&str, AttributeValue)]) -> Result<PutOutcome> {
        let mut req = self.client.put_item().table_name(&self.table).set_item(Some(item));
        if let Some(c) = condition {
            req = req.condition_expression(c);
            for (k, v) in values {
                req = req.expression_attribute_values(*k, v.clone());
            }
            // DynamoDB rejects names an expression does not use.
            for (alias, name) in [("#pk", PK), ("#v", "version"), ("#rank", "rank")] {
                if c.contains(alias) {
                    req = req.expression_attribute_names(alias, name);
                }
            }
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Written),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(PutOutcome::ConditionFailed),
            Err(e) => Err(store_error(&self.table, "PutItem", e)),
        }
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(&self.table, "GetItem", e))?;
        Ok(out.item)
    }

    /// Every item of partition `pk` (optionally with `sk` starting with `prefix`), all pages.
    async fn query(&self, pk: &str, prefix: Option<&str>) -> Result<Vec<Item>> {
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(pk))
            .set_limit(self.page_size);
        req = match prefix {
            Some(p) => req
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":prefix", s(p)),
            None => req.key_condition_expression("#pk = :pk"),
        };
        req.into_paginator().items().send().try_collect().await.map_err(|e| store_error(&self.table, "Query", e))
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .send()
            .await
            .map_err(|e| store_error(&self.table, "DeleteItem", e))?;
        Ok(())
    }

    /// Deletes items of `pk` whose sort key starts with `prefix` (old versions of split values).
    async fn delete_prefix(&self, pk: &str, prefix: &str) {
        let result = async {
            for item in self.query(pk, Some(prefix)).await? {
                if let Some(sk) = get_s(&item, SK) {
                    self.delete(pk, sk).await?;
                }
            }
            Ok::<_, FanoutError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(pk, prefix, error = %e, "could not delete an old version (harmless: it is never read)");
        }
    }

    /// Writes `text` as parts `<prefix><nnnn>` of partition `pk`; returns the number of parts.
    async fn put_parts(&self, pk: &str, prefix: &str, text: &str, expires_at: Option<u64>) -> Result<u32> {
        let parts = split_parts(text, self.part_bytes);
        for (i, part) in parts.iter().enumerate() {
            let mut item = key(pk, &format!("{prefix}{i:04}"));
            item.insert("data".into(), s(part));
            if let Some(t) = expires_at {
                item.insert(TTL_ATTRIBUTE.into(), n(t));
            }
            self.put(item, None, &[]).await?;
        }
        Ok(parts.len() as u32)
    }

    async fn write_summary(&self, run_id: &str, summary: &RunSummary, expires_at: u64) -> Result<(String, u32)> {
        let version = format!("{}-{}", unix_now(), unique_suffix());
        let count = self.put_parts(&run_pk(run_id), &format!("SUMMARY#{version}#"), &to_json(summary)?, Some(expires_at)).await?;
        Ok((version, count))
    }

    async fn read_org(&self, scope: &Scope) -> Result<ReadOrg> {
        let Some(current) = self.get(&org_pk(scope), CURRENT_SK).await? else { return Ok(ReadOrg::Missing) };
        let (Some(version), Some(parts)) = (get_s(&current, "version"), get_n(&current, "parts")) else {
            return Err(FanoutError::Store("account cache pointer ORG/CURRENT is malformed".into()));
        };
        let items = self.query(&org_version_pk(version), Some("PART#")).await?;
        match join_parts(&items, "PART#", parts as usize) {
            Some(text) => Ok(ReadOrg::Found(from_json(&text)?)),
            None => Ok(ReadOrg::Replaced),
        }
    }
}

enum PutOutcome {
    Written,
    ConditionFailed,
}

enum ReadOrg {
    Missing,
    Found(OrgSnapshot),
    /// The version was replaced (and its parts deleted) while being read.
    Replaced,
}

/// Creates the table (pk S / sk S, on-demand) and enables TTL on `expiresAt`. Idempotent: an
/// existing table is fine. Waits until the table is ACTIVE.
pub async fn create_table(client: &Client, name: &str) -> Result<()> {
    let attr = |n: &str| AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build();
    let key_el = |n: &str, t| KeySchemaElement::builder().attribute_name(n).key_type(t).build();
    let build_err = |e: aws_sdk_dynamodb::error::BuildError| FanoutError::Internal(format!("CreateTable: {e}"));
    let created = client
        .create_table()
        .table_name(name)
        .attribute_definitions(attr(PK).map_err(build_err)?)
        .attribute_definitions(attr(SK).map_err(build_err)?)
        .key_schema(key_el(PK, KeyType::Hash).map_err(build_err)?)
        .key_schema(key_el(SK, KeyType::Range).map_err(build_err)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("ResourceInUseException") => {}
        Err(e) => return Err(store_error(name, "CreateTable", e)),
    }
    for _ in 0..120 {
        let out = client.describe_table().table_name(name).send().await.map_err(|e| store_error(name, "DescribeTable", e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name(TTL_ATTRIBUTE)
        .enabled(true)
        .build()
        .map_err(|e| FanoutError::Internal(format!("UpdateTimeToLive: {e}")))?;
    match client.update_time_to_live().table_name(name).time_to_live_specification(ttl).send().await {
        Ok(_) => Ok(()),
        // "TimeToLive is already enabled": a second create_table on the same table.
        Err(e) if error_code(&e) == Some("ValidationException") => Ok(()),
        Err(e) => Err(store_error(name, "UpdateTimeToLive", e)),
    }
}

#[async_trait]
impl AccountCache for DynamoStore {
    async fn cached_org(&self, scope: &Scope) -> Result<Option<OrgSnapshot>> {
        // A concurrent refresh may replace the version being read; read the new one then.
        for _ in 0..3 {
            match self.read_org(scope).await? {
                ReadOrg::Missing => return Ok(None),
                ReadOrg::Found(snapshot) => return Ok(Some(snapshot)),
                ReadOrg::Replaced => continue,
            }
        }
        Ok(None)
    }

    async fn put_org(&self, scope: &Scope, snapshot: &OrgSnapshot) -> Result<()> {
        let version = format!("{}-{}", snapshot.fetched_at, unique_suffix());
        let parts = self.put_parts(&org_version_pk(&version), "PART#", &to_json(snapshot)?, None).await?;
        let mut current = key(&org_pk(scope), CURRENT_SK);
        current.insert("version".into(), s(&version));
        current.insert("parts".into(), n(parts as u64));
        current.insert("fetchedAt".into(), n(snapshot.fetched_at));
        current.insert("accounts".into(), n(snapshot.accounts.len() as u64));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(current))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error(&self.table, "PutItem", e))?;
        // Each version is replaced exactly once, so the one replaced here is safe to delete.
        if let Some(old) = out.attributes().and_then(|a| get_s(a, "version")) {
            self.delete_prefix(&org_version_pk(old), "PART#").await;
        }
        Ok(())
    }
}

#[async_trait]
impl RunLog for DynamoStore {
    async fn put_run(&self, record: &RunRecord) -> Result<()> {
        let run_id = record.plan.run_id.as_str();
        let pk = run_pk(run_id);
        let expires = self.expires_at(record.plan.created_at.max(unix_now()));
        let mut header = record.plan.clone();
        let skipped = std::mem::take(&mut header.skipped);
        let batches: Vec<Vec<PlanItem>> = header.batches.iter_mut().map(|b| std::mem::take(&mut b.items)).collect();

        // Claim the id first: a second put_run of the same id fails before touching anything.
        let mut meta = key(&pk, META_SK);
        meta.insert("runId".into(), s(run_id));
        meta.insert("status".into(), s(&status_str(record.status)?));
        meta.insert("createdAt".into(), n(record.plan.created_at));
        meta.insert("stored".into(), AttributeValue::Bool(false));
        meta.insert(TTL_ATTRIBUTE.into(), n(expires));
        if let PutOutcome::ConditionFailed = self.put(meta, Some("attribute_not_exists(#pk)"), &[]).await? {
            return Err(FanoutError::Store(format!("run {run_id} exists")));
        }

        let plan_parts = self.put_parts(&pk, "PLAN#", &to_json(&header)?, Some(expires)).await?;
        let skipped_parts = self.put_parts(&pk, "SKIPPED#", &to_json(&skipped)?, Some(expires)).await?;
        let mut batch_parts = Vec::with_capacity(batches.len());
        for (pos, items) in batches.iter().enumerate() {
            let count = self.put_parts(&pk, &format!("BATCH#{pos:06}#"), &to_json(items)?, Some(expires)).await?;
            batch_parts.push(n(count as u64));
        }
        let summary = match &record.summary {
            Some(summary) => Some(self.write_summary(run_id, summary, expires).await?),
            None => None,
        };

        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(&pk))
            .key(SK, s(META_SK))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":pp", n(plan_parts as u64))
            .expression_attribute_values(":sp", n(skipped_parts as u64))
            .expression_attribute_values(":bp", AttributeValue::L(batch_parts));
        // Every attribute through an alias: several plain names (e.g. `stored`) are reserved words.
        update = update
            .expression_attribute_names("#stored", "stored")
            .expression_attribute_names("#pp", "planParts")
            .expression_attribute_names("#sp", "skippedParts")
            .expression_attribute_names("#bp", "batchParts");
        let mut expr = "SET #stored = :t, #pp = :pp, #sp = :sp, #bp = :bp".to_string();
        if let Some((version, parts)) = summary {
            expr.push_str(", #sv = :sv, #sn = :sn");
            update = update
                .expression_attribute_names("#sv", "summaryVersion")
                .expression_attribute_names("#sn", "summaryParts")
                .expression_attribute_values(":sv", s(&version))
                .expression_attribute_values(":sn", n(parts as u64));
        }
        update.update_expression(expr).send().await.map_err(|e| store_error(&self.table, "UpdateItem", e))?;

        // Listed only once complete.
        let mut index = key(RUNS_PK, run_id);
        index.insert("createdAt".into(), n(record.plan.created_at));
        index.insert(TTL_ATTRIBUTE.into(), n(expires));
        self.put(index, None, &[]).await?;
        Ok(())
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let items = self.query(&run_pk(run_id), None).await?;
        let Some(meta) = items.iter().find(|i| get_s(i, SK) == Some(META_SK)) else { return Ok(None) };
        let incomplete = || {
            FanoutError::Store(format!(
                "run {run_id} is incompletely stored (its planner stopped while storing it); plan the run again"
            ))
        };
        if !matches!(meta.get("stored"), Some(AttributeValue::Bool(true))) {
            return Err(incomplete());
        }
        let plan_parts = get_n(meta, "planParts").ok_or_else(incomplete)? as usize;
        let skipped_parts = get_n(meta, "skippedParts").ok_or_else(incomplete)? as usize;
        let batch_parts: Vec<usize> = match meta.get("batchParts") {
            Some(AttributeValue::L(l)) => l.iter().filter_map(|v| v.as_n().ok()?.parse().ok()).collect(),
            _ => return Err(incomplete()),
        };

        let mut plan: Plan = from_json(&join_parts(&items, "PLAN#", plan_parts).ok_or_else(incomplete)?)?;
        plan.skipped = from_json(&join_parts(&items, "SKIPPED#", skipped_parts).ok_or_else(incomplete)?)?;
        if plan.batches.len() != batch_parts.len() {
            return Err(incomplete());
        }
        for (pos, (batch, parts)) in plan.batches.iter_mut().zip(batch_parts).enumerate() {
            batch.items = from_json(&join_parts(&items, &format!("BATCH#{pos:06}#"), parts).ok_or_else(incomplete)?)?;
        }
        let summary = match (get_s(meta, "summaryVersion"), get_n(meta, "summaryParts")) {
            (Some(version), Some(parts)) => {
                let text = join_parts(&items, &format!("SUMMARY#{version}#"), parts as usize).ok_or_else(incomplete)?;
                Some(from_json(&text)?)
            }
            _ => None,
        };
        let status = parse_status(get_s(meta, "status").unwrap_or("planned"))?;
        Ok(Some(RunRecord { plan, status, summary }))
    }

    async fn update_run(&self, run_id: &str, status: RunStatus, summary: Option<&RunSummary>) -> Result<()> {
        let pk = run_pk(run_id);
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(&pk))
            .key(SK, s(META_SK))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":s", s(&status_str(status)?))
            .return_values(ReturnValue::UpdatedOld);
        let mut expr = "SET #status = :s".to_string();
        if let Some(summary) = summary {
            let Some(meta) = self.get(&pk, META_SK).await? else {
                return Err(FanoutError::Store(format!("no run {run_id}")));
            };
            let expires = get_n(&meta, TTL_ATTRIBUTE).unwrap_or_else(|| self.expires_at(unix_now()));
            let (version, parts) = self.write_summary(run_id, summary, expires).await?;
            expr.push_str(", #sv = :sv, #sn = :sn");
            update = update
                .expression_attribute_names("#sv", "summaryVersion")
                .expression_attribute_names("#sn", "summaryParts")
                .expression_attribute_values(":sv", s(&version))
                .expression_attribute_values(":sn", n(parts as u64));
        }
        let out = match update.update_expression(expr).send().await {
            Ok(out) => out,
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                return Err(FanoutError::Store(format!("no run {run_id}")))
            }
            Err(e) => return Err(store_error(&self.table, "UpdateItem", e)),
        };
        if summary.is_some() {
            if let Some(old) = out.attributes().and_then(|a| get_s(a, "summaryVersion")) {
                self.delete_prefix(&pk, &format!("SUMMARY#{old}#")).await;
            }
        }
        Ok(())
    }

    async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(RUNS_PK))
                .scan_index_forward(false)
                .limit((limit - out.len()).clamp(1, 100) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error(&self.table, "Query", e))?;
            for item in page.items() {
                if let Some(run_id) = get_s(item, SK) {
                    // Expired (TTL) or half-deleted runs are skipped, not errors.
                    match self.get_run(run_id).await {
                        Ok(Some(record)) => out.push(record),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(run_id, error = %e, "listed run not readable"),
                    }
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn put_result(&self, result: &AccountResult) -> Result<()> {
        let rank = u64::from(result.outcome.finality());
        let mut item = key(&results_pk(&result.run_id), &result.key());
        item.insert("outcome".into(), s(result.outcome.as_str()));
        item.insert("rank".into(), n(rank));
        item.insert("batch".into(), n(result.batch as u64));
        item.insert("data".into(), s(&to_json(result)?));
        item.insert(TTL_ATTRIBUTE.into(), n(self.expires_at(unix_now())));
        // Mirrors `sso_fanout_core::store::supersedes`: a write replaces the stored result only
        // when it is at least as final, so a retried worker's `timed_out` never hides a final one.
        // One item per (run, account, pair) by key: duplicates cannot exist.
        let condition = "attribute_not_exists(#pk) OR #rank <= :rank";
        match self.put(item, Some(condition), &[(":rank", n(rank))]).await? {
            PutOutcome::Written | PutOutcome::ConditionFailed => Ok(()),
        }
    }

    async fn results(&self, run_id: &str) -> Result<Vec<AccountResult>> {
        self.query(&results_pk(run_id), None)
            .await?
            .iter()
            .map(|item| from_json(get_s(item, "data").ok_or_else(|| FanoutError::Store("result item without data".into()))?))
            .collect()
    }
}

#[async_trait]
impl LatencyHistory for DynamoStore {
    async fn latency_samples(&self, scope: &Scope, limit: usize) -> Result<Vec<u64>> {
        let samples = match self.get(&latency_pk(scope), LATENCY_SK).await? {
            Some(item) => samples_of(&item),
            None => Vec::new(),
        };
        let skip = samples.len().saturating_sub(limit);
        Ok(samples[skip..].to_vec())
    }

    async fn add_latency_samples(&self, scope: &Scope, samples: &[u64]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let pk = latency_pk(scope);
        // Optimistic concurrency: workers finishing at once each retry on the newer list.
        for attempt in 0..8u32 {
            let current = self.get(&pk, LATENCY_SK).await?;
            let version = current.as_ref().and_then(|i| get_n(i, "version"));
            let mut all = current.as_ref().map(samples_of).unwrap_or_default();
            all.extend_from_slice(samples);
            let skip = all.len().saturating_sub(LATENCY_SAMPLES_KEPT);
            let mut item = key(&pk, LATENCY_SK);
            item.insert("samples".into(), AttributeValue::L(all[skip..].iter().map(|v| n(*v)).collect()));
            item.insert("version".into(), n(version.unwrap_or(0) + 1));
            let outcome = match version {
                None => self.put(item, Some("attribute_not_exists(#pk)"), &[]).await?,
                Some(v) => self.put(item, Some("#v = :v"), &[(":v", n(v))]).await?,
            };
            match outcome {
                PutOutcome::Written => return Ok(()),
                PutOutcome::ConditionFailed => tokio::time::sleep(CONTENDED_WRITES.random_delay(attempt)).await,
            }
        }
        Err(FanoutError::Store("latency samples: too many concurrent writers".into()))
    }
}

#[async_trait]
impl DocumentStore for DynamoStore {
    async fn put_document(&self, scope: &Scope, document: &StoredDocument) -> Result<()> {
        let json = to_json(document)?;
        if json.len() > self.part_bytes {
            return Err(FanoutError::Store(format!(
                "document {:?} is {} bytes as JSON; stored documents are limited to {} bytes",
                document.name,
                json.len(),
                self.part_bytes
            )));
        }
        let mut item = key(&document_pk(scope), &document.name);
        item.insert("storedAt".into(), n(document.stored_at));
        item.insert("data".into(), s(&json));
        self.put(item, None, &[]).await.map(|_| ())
    }

    async fn document(&self, scope: &Scope, name: &str) -> Result<Option<StoredDocument>> {
        self.get(&document_pk(scope), name).await?.map(|item| document_of(&item)).transpose()
    }

    async fn documents(&self, scope: &Scope) -> Result<Vec<StoredDocument>> {
        self.query(&document_pk(scope), None).await?.iter().map(document_of).collect()
    }
}

fn document_of(item: &Item) -> Result<StoredDocument> {
    from_json(get_s(item, "data").ok_or_else(|| FanoutError::Store("document item without data".into()))?)
}

/// Stored rules documents of one scope, one item per name.
fn document_pk(scope: &Scope) -> String {
    format!("DOC#{}", scope.key())
}

fn samples_of(item: &Item) -> Vec<u64> {
    match item.get("samples") {
        Some(AttributeValue::L(l)) => l.iter().filter_map(|v| v.as_n().ok()?.parse().ok()).collect(),
        _ => Vec::new(),
    }
}

fn run_pk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}

fn results_pk(run_id: &str) -> String {
    format!("RESULTS#{run_id}")
}

/// The account cache pointer of one scope (organization, instance, region).
fn org_pk(scope: &Scope) -> String {
    format!("ORG#{}", scope.key())
}

/// The parts of one cached snapshot version.
fn org_version_pk(version: &str) -> String {
    format!("ORGSNAP#{version}")
}

fn latency_pk(scope: &Scope) -> String {
    format!("LATENCY#{}", scope.key())
}

pub(crate) fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

pub(crate) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub(crate) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<u64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| FanoutError::Store(format!("cannot encode: {e}")))
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| FanoutError::Store(format!("cannot decode a stored value: {e}")))
}

fn status_str(status: RunStatus) -> Result<String> {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(FanoutError::Internal(format!("run status {status:?} has no name"))),
    }
}

fn parse_status(text: &str) -> Result<RunStatus> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|e| FanoutError::Store(format!("run status {text}: {e}")))
}

/// Splits at char boundaries into pieces of at most `max` bytes (at least one piece).
fn split_parts(text: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    parts.push(rest);
    parts
}

/// The `data` of items `<prefix><nnnn>` (exactly `<prefix>` + 4 digits), in order; None unless
/// exactly parts 0..count are present.
fn join_parts(items: &[Item], prefix: &str, count: usize) -> Option<String> {
    let mut found: BTreeMap<usize, &str> = BTreeMap::new();
    for item in items {
        let Some(rest) = get_s(item, SK).and_then(|sk| sk.strip_prefix(prefix)) else { continue };
        if rest.len() == 4 && rest.bytes().all(|b| b.is_ascii_digit()) {
            found.insert(rest.parse().ok()?, get_s(item, "data")?);
        }
    }
    if found.len() != count || found.keys().enumerate().any(|(i, k)| i != *k) {
        return None;
    }
    Some(found.values().copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_char_boundaries_and_joins_back() {
        let text = "añb€c".repeat(50);
        let parts = split_parts(&text, 7);
        assert!(parts.iter().all(|p| p.len() <= 7));
        assert_eq!(parts.concat(), text);
        assert_eq!(split_parts("", 10), vec![""]);
        let items: Vec<Item> = parts
            .iter()
            .enumerate()
            .rev()
            .map(|(i, p)| {
                let mut it = key("RUN#x", &format!("PLAN#{i:04}"));
                it.insert("data".into(), s(p));
                it
            })
            .collect();
        assert_eq!(join_parts(&items, "PLAN#", parts.len()).as_deref(), Some(text.as_str()));
        assert_eq!(join_parts(&items, "PLAN#", parts.len() + 1), None);
        let gap: Vec<Item> = items.iter().filter(|i| get_s(i, SK) != Some("PLAN#0001")).cloned().collect();
        assert_eq!(join_parts(&gap, "PLAN#", parts.len() - 1), None, "a missing part is detected");
    }

    #[test]
    fn status_names_round_trip() {
        for st in [RunStatus::Planned, RunStatus::Running, RunStatus::Finished, RunStatus::Interrupted] {
            assert_eq!(parse_status(&status_str(st).unwrap()).unwrap(), st);
        }
    }
}
