//! `DynamoLedger` (the shared quota ledger on DynamoDB) against moto: the ledger contract every
//! `QuotaLedger` keeps, slots, fences, account locks, parking, the rate item and holders, with
//! many tasks contending; `faults` adds what DynamoDB does to requests (lost answers, late
//! duplicates, transaction conflicts, throttling). Each test gets a freshly reset moto; see
//! `sso_fanout_tests::moto`.
//!
//! moto's DynamoDB is not linearizable under concurrent requests: a transaction that is
//! cancelled restores a copy of the table taken when it started, undoing what other requests
//! wrote meanwhile, and conditions are checked and applied in separate steps. DynamoDB is
//! linearizable per item and serializes transactions. The tests reach moto through
//! `proxy::SerialProxy`, which lets one request at a time through: tasks still interleave
//! between requests exactly as they would against DynamoDB. moto also ignores
//! `ClientRequestToken`: a retried transaction is evaluated again (DynamoDB answers success).

// Beside this file (a test crate's root looks for modules next to it, not under its name).
#[path = "aws_ledger/faults.rs"]
mod faults;
#[path = "aws_ledger/proxy.rs"]
mod proxy;

use aws_sdk_dynamodb::types::AttributeValue;
use proxy::SerialProxy;
use sso_fanout_aws::create_table;
use sso_fanout_aws::ledger::DynamoLedger;
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::{Operation, Scope};
use sso_fanout_core::store::ledger::{contract, Claim, ClaimRequest, HolderRecord, QuotaLedger, SlotRecord};
use sso_fanout_core::FanoutError;
use sso_fanout_tests::moto::{Moto, REGION};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TABLE: &str = "sso-fanout-ledger-test";
const SLOTS: u32 = 4;

fn scope() -> Scope {
    Scope {
        organization_id: "o-abcdef1234".into(),
        management_account_id: "100000000000".into(),
        instance_arn: "arn:aws:sso:::instance/ssoins-1111111111111111".into(),
        region: "us-east-1".into(),
    }
}

fn account(i: u64) -> AccountId {
    format!("{:012}", 200_000_000_000 + i).parse().unwrap()
}

/// The ledger's DynamoDB client (its timeouts, its clock) for `endpoint`, the table created.
async fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let client = sso_fanout_aws::AwsClients::local(endpoint, REGION).await.ledger_dynamodb;
    create_table(&client, TABLE).await.unwrap();
    client
}

/// A ledger through a serializing proxy to `moto`, the proxy, and a client straight to moto
/// (to read and change items behind the ledger's back).
async fn ledger(moto: &Moto) -> (DynamoLedger, SerialProxy, aws_sdk_dynamodb::Client) {
    let proxy = SerialProxy::new(moto.port);
    let client = dynamodb(&proxy.endpoint).await;
    let direct = sso_fanout_aws::AwsClients::local(&moto.endpoint, REGION).await.dynamodb;
    (DynamoLedger::new(client, TABLE), proxy, direct)
}

fn request<'a>(slot: u32, seen_fence: u64, holder: &'a str, account: &'a AccountId, now_us: u64) -> ClaimRequest<'a> {
    ClaimRequest { slot, seen_fence, holder, account, op: Operation::Assign, now_us }
}

async fn claim(l: &DynamoLedger, slot: u32, seen_fence: u64, holder: &str, account: &AccountId) -> Claim {
    l.claim(&scope(), &request(slot, seen_fence, holder, account, 1_000)).await.unwrap()
}

async fn slot_of(l: &DynamoLedger, slot: u32) -> SlotRecord {
    l.view(&scope()).await.unwrap().slots.into_iter().find(|s| s.slot == slot).unwrap_or_else(|| SlotRecord::free(slot))
}

/// `(slot, fence)` the account's lock names, read from the table.
async fn lock_of(client: &aws_sdk_dynamodb::Client, account: &AccountId) -> Option<(u64, u64)> {
    let out = client
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(format!("QUOTALOCK#{}", scope().key())))
        .key("sk", AttributeValue::S(account.as_str().into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let n = |i: &std::collections::HashMap<String, AttributeValue>, k: &str| i[k].as_n().unwrap().parse::<u64>().unwrap();
    out.item.map(|i| (n(&i, "slot"), n(&i, "fence")))
}

/// Every lock of the scope, account -> (slot, fence).
async fn locks(client: &aws_sdk_dynamodb::Client) -> BTreeMap<String, (u64, u64)> {
    let items = client.scan().table_name(TABLE).send().await.unwrap().items.unwrap_or_default();
    let pk = format!("QUOTALOCK#{}", scope().key());
    items
        .iter()
        .filter(|i| i["pk"].as_s().unwrap() == &pk)
        .map(|i| (i["sk"].as_s().unwrap().clone(), (i["slot"].as_n().unwrap().parse().unwrap(), i["fence"].as_n().unwrap().parse().unwrap())))
        .collect()
}

/// The ledger's invariant, read from the table: no two slots lock one account, and the lock of
/// every locked account names the slot that locks it, and nothing else is locked.
async fn assert_locks_match_slots(l: &DynamoLedger, client: &aws_sdk_dynamodb::Client) {
    let view = l.view(&scope()).await.unwrap();
    let mut locked = BTreeMap::new();
    for s in &view.slots {
        if let Some(a) = s.locked_account() {
            assert!(locked.insert(a.as_str().to_string(), (u64::from(s.slot), s.fence)).is_none(), "two slots lock {a:?}: {:?}", view.slots);
        }
    }
    assert_eq!(locks(client).await, locked, "locks and slots disagree: {:?}", view.slots);
}

/// A small deterministic generator (the tests crate has no `rand`).
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test]
async fn keeps_the_ledger_contract() {
    let moto = Moto::empty();
    let (ledger, _proxy, client) = ledger(&moto).await;
    contract::check(&ledger, &scope()).await;
    // And the table holds what the contract left, as TABLE.md lays it out: one lock (slot 0 of
    // the other scope), the others released.
    let other = Scope { instance_arn: format!("{}-other", scope().instance_arn), ..scope() };
    let items = client.scan().table_name(TABLE).send().await.unwrap().items.unwrap_or_default();
    let keys: BTreeSet<(String, String)> = items.iter().map(|i| (i["pk"].as_s().unwrap().clone(), i["sk"].as_s().unwrap().clone())).collect();
    let (quota, other_quota) = (format!("QUOTA#{}", scope().key()), format!("QUOTA#{}", other.key()));
    let expected: BTreeSet<(String, String)> = [
        (quota.clone(), "RATE".to_string()),
        (quota.clone(), "SLOT#0000".to_string()),
        (quota.clone(), "SLOT#0001".to_string()),
        (quota, "SLOT#0002".to_string()),
        (other_quota, "SLOT#0000".to_string()),
        (format!("QUOTALOCK#{}", other.key()), "300000000002".to_string()),
    ]
    .into();
    assert_eq!(keys, expected);
    assert_locks_match_slots(&ledger, &client).await;
}

/// What the contending tasks were granted, checked at every grant. A lease is entered after the
/// ledger granted it and left before the task releases, parks or hands it over, so the live
/// leases the tracker holds are always inside what the ledger holds. (A parked slot frees its
/// account in the ledger at the takeover's claim, before the taker can note it: `watch` checks
/// parked accounts on the ledger itself.)
#[derive(Default)]
struct Tracker {
    /// slot -> (holder, account; None while being handed over)
    live: BTreeMap<u32, (String, Option<AccountId>)>,
    /// slot -> the account its last lease was parked with (None: released)
    parked: BTreeMap<u32, AccountId>,
    last_fence: BTreeMap<u32, u64>,
    grants: u64,
    handovers: u64,
    takeovers: u64,
    most_live: usize,
}

impl Tracker {
    fn granted(&mut self, slot: u32, fence: u64, holder: &str, account: &AccountId, handover: bool) {
        match self.live.get(&slot) {
            Some((h, None)) if handover && h == holder => {}
            Some(other) => panic!("slot {slot} granted to {holder} while {other:?} holds it"),
            None => assert!(!handover, "a hand-over of a slot not held"),
        }
        self.takeovers += u64::from(self.parked.remove(&slot).is_some());
        assert!(self.live.len() < SLOTS as usize || handover, "a 5th live holder: {holder} on slot {slot} besides {:?}", self.live);
        assert!(
            self.live.values().all(|(_, a)| a.as_ref() != Some(account)),
            "account {account:?} granted on slot {slot} to {holder} while live in {:?}",
            self.live
        );
        let last = self.last_fence.get(&slot).copied().unwrap_or(0);
        assert_eq!(fence, last + 1, "slot {slot}: fence {fence} granted after fence {last}");
        self.last_fence.insert(slot, fence);
        self.grants += 1;
        self.handovers += u64::from(handover);
        self.live.insert(slot, (holder.to_string(), Some(account.clone())));
        self.most_live = self.most_live.max(self.live.len());
    }

    fn handing_over(&mut self, slot: u32) {
        self.live.get_mut(&slot).expect("handed-over slot is live").1 = None;
    }

    /// Ends the lease: released (None) or parked with its account.
    fn ending(&mut self, slot: u32, holder: &str, parked: Option<AccountId>) {
        let (h, _) = self.live.remove(&slot).expect("ended slot was live");
        assert_eq!(h, holder);
        if let Some(a) = parked {
            self.parked.insert(slot, a);
        }
    }
}

/// Views the ledger until `stop`: no view (one consistent query, a snapshot on moto through the
/// serializing proxy) ever shows two slots locking one account. Returns the views checked.
fn watch(ledger: Arc<[DynamoLedger; 2]>, stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut views = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(view) = ledger[0].view(&scope()).await {
                let mut locked = BTreeSet::new();
                for a in view.slots.iter().filter_map(|s| s.locked_account()) {
                    assert!(locked.insert(a.clone()), "two slots lock {a:?}: {:?}", view.slots);
                }
                views += 1;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        views
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn contending_holders_never_exceed_slots_or_share_an_account() {
    let moto = Moto::empty();
    let proxy = SerialProxy::new(moto.port);
    let client = dynamodb(&proxy.endpoint).await;
    // Two processes: a lease is sometimes released or parked through the one that did not grant
    // it (which then learns its account by a read).
    let ledgers = Arc::new([DynamoLedger::new(client.clone(), TABLE), DynamoLedger::new(client.clone(), TABLE)]);
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let (lost, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Until enough grants, or a time limit on a slow machine (moto answers ~100 requests/s).
    const ENOUGH: u64 = 80;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch(ledgers.clone(), stop.clone());

    let mut tasks = Vec::new();
    for t in 0..24u64 {
        let (ledgers, tracker, lost, busy) = (ledgers.clone(), tracker.clone(), lost.clone(), busy.clone());
        tasks.push(tokio::spawn(async move {
            let holder = format!("holder-{t:02}");
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1).wrapping_mul(0x1000_0001));
            let me = (t % 2) as usize;
            let ledger = &ledgers[me];
            while Instant::now() < deadline && tracker.lock().unwrap().grants < ENOUGH {
                // Free slots, and parked ones (as if their operation had been checked ended).
                let view = ledger.view(&scope()).await.unwrap();
                let open: Vec<SlotRecord> = (0..SLOTS)
                    .map(|i| view.slots.iter().find(|s| s.slot == i).cloned().unwrap_or_else(|| SlotRecord::free(i)))
                    .filter(|s| s.holder.is_none())
                    .collect();
                if open.is_empty() {
                    tokio::time::sleep(Duration::from_millis(40 + rng.below(80))).await;
                    continue;
                }
                let slot = open[rng.below(open.len() as u64) as usize].clone();
                let mut acct = account(rng.below(6));
                let mut fence = match claim(ledger, slot.slot, slot.fence, &holder, &acct).await {
                    Claim::Granted { fence } => fence,
                    refused => {
                        let counter = if refused == Claim::Lost { &lost } else { &busy };
                        counter.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10 + rng.below(40))).await;
                        continue;
                    }
                };
                assert_eq!(fence, slot.fence + 1);
                tracker.lock().unwrap().granted(slot.slot, fence, &holder, &acct, false);
                // Hold it, sometimes handing it over to further accounts, then release or park it.
                loop {
                    tokio::time::sleep(Duration::from_millis(10 + rng.below(30))).await;
                    if rng.below(3) != 0 {
                        break;
                    }
                    let next = account(rng.below(6));
                    tracker.lock().unwrap().handing_over(slot.slot);
                    match claim(ledger, slot.slot, fence, &holder, &next).await {
                        Claim::Granted { fence: f } => {
                            assert_eq!(f, fence + 1);
                            tracker.lock().unwrap().granted(slot.slot, f, &holder, &next, true);
                            (fence, acct) = (f, next);
                        }
                        Claim::AccountBusy => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            tracker.lock().unwrap().live.get_mut(&slot.slot).unwrap().1 = Some(acct.clone());
                            break;
                        }
                        Claim::Lost => panic!("{holder} lost its own slot {} (fence {fence}) in a hand-over", slot.slot),
                    }
                }
                let via = &ledgers[if rng.below(4) == 0 { 1 - me } else { me }];
                if rng.below(4) == 0 {
                    tracker.lock().unwrap().ending(slot.slot, &holder, Some(acct.clone()));
                    assert!(via.park(&scope(), slot.slot, fence, Some("req")).await.unwrap(), "{holder} could not park slot {}", slot.slot);
                } else {
                    tracker.lock().unwrap().ending(slot.slot, &holder, None);
                    assert!(via.release(&scope(), slot.slot, fence).await.unwrap(), "{holder} could not release slot {} fence {fence}", slot.slot);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let views = watcher.await.unwrap();

    let (lost, busy) = (lost.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    let tracker = std::mem::take(&mut *tracker.lock().unwrap());
    let (writes, units) = (ledgers[0].writes() + ledgers[1].writes(), ledgers[0].write_units() + ledgers[1].write_units());
    eprintln!(
        "grants {} ({} hand-overs, {} parked slots taken over), lost {lost}, account busy {busy}, most live at once {}, item writes {writes}, write units {units}, {views} views checked",
        tracker.grants, tracker.handovers, tracker.takeovers, tracker.most_live
    );
    assert!(views >= 20, "the watcher hardly looked: {views}");
    assert!(tracker.grants >= 40, "too few grants to mean anything: {}", tracker.grants);
    assert!(tracker.handovers >= 5 && tracker.takeovers >= 3, "too few hand-overs or takeovers: {} / {}", tracker.handovers, tracker.takeovers);
    assert!(lost >= 10 && busy >= 3, "too little contention: lost {lost}, busy {busy}");
    assert!(tracker.most_live >= 3, "slots were never held in parallel: {}", tracker.most_live);
    // Every grant raised its slot's fence by one; released slots are free, parked ones keep
    // their account locked, and the locks say exactly that.
    let view = ledgers[0].view(&scope()).await.unwrap();
    for s in &view.slots {
        assert_eq!(s.fence, tracker.last_fence.get(&s.slot).copied().unwrap_or(0), "{s:?}");
        assert_eq!(s.holder, None, "{s:?}");
        assert_eq!(s.locked_account(), tracker.parked.get(&s.slot), "{s:?}");
    }
    assert_eq!(view.slots.iter().map(|s| s.fence).sum::<u64>(), tracker.grants);
    assert_locks_match_slots(&ledgers[0], &client).await;
}

#[tokio::test]
async fn a_hand_over_moves_the_lock_and_a_parked_slot_keeps_it() {
    let moto = Moto::empty();
    let (ledger, proxy, client) = ledger(&moto).await;
    let (a, b, c) = (account(1), account(2), account(3));
    assert_eq!(claim(&ledger, 0, 0, "h1", &a).await, Claim::Granted { fence: 1 });
    assert_eq!(lock_of(&client, &a).await, Some((0, 1)));
    // A hand-over to another account frees the first at once; the new one is locked.
    assert_eq!(claim(&ledger, 0, 1, "h1", &b).await, Claim::Granted { fence: 2 });
    assert_eq!((lock_of(&client, &a).await, lock_of(&client, &b).await), (None, Some((0, 2))));
    assert_eq!(claim(&ledger, 1, 0, "h2", &b).await, Claim::AccountBusy);
    assert_eq!(slot_of(&ledger, 1).await, SlotRecord::free(1), "a refused claim leaves the slot as it was");
    // To the same account: the lock follows the fence.
    assert_eq!(claim(&ledger, 0, 2, "h1", &b).await, Claim::Granted { fence: 3 });
    assert_eq!(lock_of(&client, &b).await, Some((0, 3)));
    // The old fences are dead.
    assert!(!ledger.release(&scope(), 0, 2).await.unwrap());
    assert!(!ledger.park(&scope(), 0, 1, None).await.unwrap());

    // Parked: the holder goes, the account stays locked (lock untouched), the request id is kept.
    assert!(ledger.park(&scope(), 0, 3, Some("req-7")).await.unwrap());
    let parked = slot_of(&ledger, 0).await;
    assert_eq!((parked.holder.as_deref(), parked.locked_account()), (None, Some(&b)));
    assert_eq!(parked.operation.unwrap().request_id.as_deref(), Some("req-7"));
    assert_eq!(lock_of(&client, &b).await, Some((0, 3)));
    // Parked again without an id (a second park of the same lease): the id stays.
    assert!(ledger.park(&scope(), 0, 3, None).await.unwrap());
    assert_eq!(slot_of(&ledger, 0).await.operation.unwrap().request_id.as_deref(), Some("req-7"));
    assert_eq!(claim(&ledger, 2, 0, "h3", &b).await, Claim::AccountBusy, "a parked slot locks its account");
    // Taken over for another account by a process that never saw the lease: it reads the slot
    // to learn which lock goes.
    let other_process = DynamoLedger::new(dynamodb(&proxy.endpoint).await, TABLE);
    assert_eq!(claim(&other_process, 0, 3, "h3", &c).await, Claim::Granted { fence: 4 });
    assert_eq!((lock_of(&client, &b).await, lock_of(&client, &c).await), (None, Some((0, 4))));
    assert_eq!(claim(&ledger, 2, 0, "h4", &b).await, Claim::Granted { fence: 1 }, "b is free again");
    // Released by yet another process: slot and lock go together.
    let third = DynamoLedger::new(dynamodb(&proxy.endpoint).await, TABLE);
    assert!(third.release(&scope(), 0, 4).await.unwrap());
    assert_eq!(lock_of(&client, &c).await, None);
    assert!(!third.release(&scope(), 0, 4).await.unwrap(), "released twice");
    assert_locks_match_slots(&ledger, &client).await;
}

#[tokio::test]
async fn a_stale_lock_is_taken_over_and_a_live_one_never_is() {
    let moto = Moto::empty();
    let (ledger, _proxy, client) = ledger(&moto).await;
    let a = account(1);
    let put_lock = |slot: u64, fence: u64| {
        let client = client.clone();
        let account = a.clone();
        async move {
            client
                .put_item()
                .table_name(TABLE)
                .item("pk", AttributeValue::S(format!("QUOTALOCK#{}", scope().key())))
                .item("sk", AttributeValue::S(account.as_str().into()))
                .item("slot", AttributeValue::N(slot.to_string()))
                .item("fence", AttributeValue::N(fence.to_string()))
                .send()
                .await
                .unwrap();
        }
    };
    // A lock naming a lease its slot has moved past (left by hand): stale, taken over.
    assert_eq!(claim(&ledger, 2, 0, "h1", &account(2)).await, Claim::Granted { fence: 1 });
    assert!(ledger.release(&scope(), 2, 1).await.unwrap());
    put_lock(2, 1).await;
    let before = ledger.writes();
    assert_eq!(claim(&ledger, 0, 0, "h2", &a).await, Claim::Granted { fence: 1 });
    assert_eq!(ledger.writes() - before, 2 + 2, "a refused attempt, then slot + lock conditioned on the stale lock");
    assert_eq!(lock_of(&client, &a).await, Some((0, 1)));
    // A lock naming a lease ahead of its slot (the slot item deleted by hand): the claim checks
    // the slot is unchanged in the same transaction.
    assert!(ledger.release(&scope(), 0, 1).await.unwrap());
    put_lock(3, 5).await;
    let before = ledger.writes();
    assert_eq!(claim(&ledger, 1, 0, "h2", &a).await, Claim::Granted { fence: 1 });
    assert_eq!(ledger.writes() - before, 2 + 3);
    assert_eq!(slot_of(&ledger, 3).await, SlotRecord::free(3), "the checked slot is left free, well-formed");
    // A lock naming a live lease is never taken, whatever its age: the account is busy.
    assert_eq!(claim(&ledger, 2, 1, "h3", &a).await, Claim::AccountBusy);
    assert_eq!(lock_of(&client, &a).await, Some((1, 1)));
    assert_locks_match_slots(&ledger, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_reservations_never_overlap() {
    let moto = Moto::empty();
    let proxy = SerialProxy::new(moto.port);
    let ledger = Arc::new(DynamoLedger::new(dynamodb(&proxy.endpoint).await, TABLE));
    const BASE: u64 = 1_000_000_000;
    const INTERVAL: u64 = 50_000;
    const CAP: u64 = 30_000_000;
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (t + 7).wrapping_mul(0x0100_0000_01B3));
            let mut got = Vec::new();
            for _ in 0..8 {
                let count = 1 + rng.below(4) as u32;
                got.push((ledger.reserve_requests(&scope(), count, INTERVAL, BASE, CAP).await.unwrap(), count));
            }
            got
        }));
    }
    let mut blocks = Vec::new();
    for task in tasks {
        blocks.extend(task.await.unwrap());
    }
    assert_eq!(blocks.len(), 128);
    let mut times: Vec<u64> = blocks.iter().flat_map(|&(first, count)| (0..u64::from(count)).map(move |i| first + i * INTERVAL)).collect();
    times.sort_unstable();
    // The blocks tile the time line exactly: no two times closer than the interval, no gaps.
    let expected: Vec<u64> = (0..times.len() as u64).map(|k| BASE + k * INTERVAL).collect();
    assert_eq!(times, expected, "reservations start at now and leave no gaps");
    // One write each, but a task's first reservation may guess the wrong case.
    assert!((128..=128 + 16 + 1).contains(&ledger.writes()), "{} writes for 128 reservations", ledger.writes());
    assert_eq!(ledger.writes(), ledger.write_units(), "single-item writes bill one unit each");

    // Sequentially: the first time is max(now, the next free time) unless that is past the cap.
    let next = *times.last().unwrap() + INTERVAL;
    assert_eq!(ledger.reserve_requests(&scope(), 2, INTERVAL, BASE, CAP).await.unwrap(), next, "now is behind: queued");
    let later = next + 10 * 1_000_000;
    assert_eq!(ledger.reserve_requests(&scope(), 1, INTERVAL, later, CAP).await.unwrap(), later, "now is ahead: at once");
    assert_eq!(ledger.reserve_requests(&scope(), 1, INTERVAL, later, CAP).await.unwrap(), later + INTERVAL);
    // A clock far behind the one that wrote the item does not wait for it: it resets the item.
    let behind = later - 60_000_000;
    assert_eq!(ledger.reserve_requests(&scope(), 1, INTERVAL, behind, CAP).await.unwrap(), behind);
    assert_eq!(ledger.reserve_requests(&scope(), 1, INTERVAL, behind, CAP).await.unwrap(), behind + INTERVAL);
}

#[tokio::test]
async fn writes_and_write_units_are_counted_per_item() {
    let moto = Moto::empty();
    let (ledger, _proxy, _client) = ledger(&moto).await;
    let (a, b) = (account(1), account(2));
    let (mut writes, mut units) = (0, 0);
    let mut step = |w: u64, u: u64, what: &str| {
        writes += w;
        units += u;
        assert_eq!((ledger.writes(), ledger.write_units()), (writes, units), "after {what}");
    };
    ledger.view(&scope()).await.unwrap();
    step(0, 0, "view");
    assert_eq!(claim(&ledger, 0, 0, "h1", &a).await, Claim::Granted { fence: 1 });
    step(2, 4, "claim: slot + lock in one transaction");
    assert_eq!(claim(&ledger, 0, 0, "h2", &b).await, Claim::Lost);
    step(2, 4, "a lost claim (the cancelled transaction)");
    assert_eq!(claim(&ledger, 1, 0, "h2", &a).await, Claim::AccountBusy);
    step(2, 4, "a claim of a busy account (+ a read of the slot its lock names)");
    assert_eq!(claim(&ledger, 0, 1, "h1", &b).await, Claim::Granted { fence: 2 });
    step(3, 6, "hand-over to another account (+ the old lock deleted)");
    assert_eq!(claim(&ledger, 0, 2, "h1", &b).await, Claim::Granted { fence: 3 });
    step(2, 4, "hand-over to the same account");
    assert!(ledger.park(&scope(), 0, 3, Some("req-1")).await.unwrap());
    step(1, 1, "park: the slot alone");
    assert_eq!(claim(&ledger, 0, 3, "h3", &b).await, Claim::Granted { fence: 4 });
    step(2, 4, "a parked slot taken for its own account");
    assert!(ledger.release(&scope(), 0, 4).await.unwrap());
    step(2, 4, "release: slot + lock in one transaction");
    assert!(!ledger.release(&scope(), 0, 4).await.unwrap());
    step(0, 0, "release of a lease known to be released: nothing to write");
    assert!(!ledger.park(&scope(), 0, 4, None).await.unwrap());
    step(1, 1, "park of a lease that is gone (the failed condition)");
    ledger.reserve_requests(&scope(), 4, 50_000, 1, 30_000_000).await.unwrap();
    step(1, 1, "reserve_requests (rate item behind now)");
    ledger.reserve_requests(&scope(), 4, 50_000, 1, 30_000_000).await.unwrap();
    step(2, 2, "reserve_requests (queued: the first guess fails)");
    let record = HolderRecord { holder: "h1".into(), waiting: 3, expires_us: 5_000_000, uncertainty_us: 9_000 };
    ledger.put_holder(&scope(), &record).await.unwrap();
    step(1, 1, "put_holder");
    ledger.remove_holder(&scope(), "h1").await.unwrap();
    step(1, 1, "remove_holder");
}

#[tokio::test]
async fn holders_views_page_and_malformed_items_are_named() {
    let moto = Moto::empty();
    let (ledger, _proxy, client) = ledger(&moto).await;
    let ledger = ledger.with_page_size(3);
    for (i, name) in ["h-b", "h-a", "h-c"].iter().enumerate() {
        let record = HolderRecord { holder: name.to_string(), waiting: i as u32, expires_us: 5_000_000 + i as u64, uncertainty_us: 0 };
        ledger.put_holder(&scope(), &record).await.unwrap();
    }
    let renewed = HolderRecord { holder: "h-a".into(), waiting: 7, expires_us: 9_000_000, uncertainty_us: 31_000 };
    ledger.put_holder(&scope(), &renewed).await.unwrap();
    for slot in 0..12 {
        assert_eq!(claim(&ledger, slot, 0, "h-a", &account(slot as u64)).await, Claim::Granted { fence: 1 });
    }
    ledger.reserve_requests(&scope(), 1, 1, 1, 30_000_000).await.unwrap();
    ledger.remove_holder(&scope(), "h-c").await.unwrap();
    let view = ledger.view(&scope()).await.unwrap();
    let b = HolderRecord { holder: "h-b".into(), waiting: 0, expires_us: 5_000_000, uncertainty_us: 0 };
    assert_eq!(view.holders, vec![renewed, b]);
    // 12 slots + the rate item + 2 holders in pages of 3: every page read, slots in order.
    assert_eq!(view.slots.iter().map(|s| s.slot).collect::<Vec<_>>(), (0..12).collect::<Vec<_>>());
    assert!(view.slots.iter().all(|s| s.fence == 1 && s.holder.as_deref() == Some("h-a")));

    // A slot whose fence is not a number is an error naming the item, never a free slot.
    client
        .update_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(format!("QUOTA#{}", scope().key())))
        .key("sk", AttributeValue::S("SLOT#0005".into()))
        .update_expression("SET fence = :x")
        .expression_attribute_values(":x", AttributeValue::S("seven".into()))
        .send()
        .await
        .unwrap();
    let e = ledger.view(&scope()).await.unwrap_err();
    assert!(matches!(&e, FanoutError::Store(m) if m.contains("SLOT#0005") && m.contains("fence")), "{e}");

    // A missing table is a configuration error naming it.
    let missing = DynamoLedger::new(client, "no-such-table");
    let e = missing.view(&scope()).await.unwrap_err();
    assert!(matches!(&e, FanoutError::Config(m) if m.contains("no-such-table")), "{e}");
}
