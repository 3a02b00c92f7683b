//! `DynamoLedger` (the shared quota ledger on DynamoDB) against moto: slots, fences, account
//! locks, hand-overs, the rate item and holders, with many tasks contending. Each test gets a
//! freshly reset moto; see `sso_fanout_tests::moto`. Times are explicit microseconds: no test
//! sleeps for a lease to expire.
//!
//! moto's DynamoDB is not linearizable under concurrent requests: a transaction that is
//! cancelled restores a copy of the table taken when it started, undoing what other requests
//! wrote meanwhile, and conditions are checked and applied in separate steps. DynamoDB is
//! linearizable per item and serializes transactions. The tests with concurrent tasks therefore
//! reach moto through `SerialProxy`, which lets one request at a time through: the tasks still
//! interleave between requests exactly as they would against DynamoDB.

use aws_sdk_dynamodb::types::AttributeValue;
use sso_fanout_aws::create_table;
use sso_fanout_aws::ledger::DynamoLedger;
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::Scope;
use sso_fanout_core::store::ledger::{Claim, ClaimRequest, HolderRecord, QuotaLedger, SlotRecord};
use sso_fanout_core::FanoutError;
use sso_fanout_tests::moto::{Moto, REGION};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
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

/// A DynamoDB client for `endpoint` and the test table (created).
async fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let client = sso_fanout_aws::AwsClients::local(endpoint, REGION).await.dynamodb;
    create_table(&client, TABLE).await.unwrap();
    client
}

async fn ledger(moto: &Moto) -> (DynamoLedger, aws_sdk_dynamodb::Client) {
    let client = dynamodb(&moto.endpoint).await;
    (DynamoLedger::new(client.clone(), TABLE), client)
}

async fn claim(
    l: &DynamoLedger,
    slot: u32,
    seen_fence: u64,
    holder: &str,
    account: &AccountId,
    now_us: u64,
    expires_us: u64,
) -> Claim {
    let c = ClaimRequest { slot, seen_fence, holder, account, now_us, expires_us };
    l.claim(&scope(), &c).await.unwrap()
}

async fn slot_of(l: &DynamoLedger, slot: u32) -> SlotRecord {
    l.view(&scope()).await.unwrap().slots.into_iter().find(|s| s.slot == slot).unwrap_or_else(|| SlotRecord::free(slot))
}

/// `(slot, fence)` the account's lock names, read from the table.
async fn lock_of(client: &aws_sdk_dynamodb::Client, account: &AccountId) -> Option<(String, String)> {
    let out = client
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(format!("QUOTALOCK#{}", scope().key())))
        .key("sk", AttributeValue::S(account.as_str().into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item.map(|i| (i["slot"].as_n().unwrap().clone(), i["fence"].as_n().unwrap().clone()))
}

/// A proxy to moto on 127.0.0.1:`upstream` that lets one request at a time through (see the
/// module doc). Each request goes upstream on its own connection, as moto closes every one.
struct SerialProxy {
    endpoint: String,
    /// Held while a request is upstream; false once the proxy is dropped.
    open: Arc<Mutex<bool>>,
}

impl SerialProxy {
    fn new(upstream: u16) -> SerialProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let open = Arc::new(Mutex::new(true));
        let gate = open.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let gate = gate.clone();
                std::thread::spawn(move || relay(conn, upstream, &gate));
            }
        });
        SerialProxy { endpoint, open }
    }
}

impl Drop for SerialProxy {
    /// Waits for the request upstream, if any, and lets no other through: a test that failed
    /// with tasks still running leaves nothing behind in the next test's moto.
    fn drop(&mut self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }
}

fn relay(client: TcpStream, upstream: u16, gate: &Mutex<bool>) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut client = client;
    loop {
        let Some(request) = read_message(&mut from_client, true)? else {
            return Ok(()); // the client closed the connection
        };
        let response = {
            let open = gate.lock().unwrap_or_else(|e| e.into_inner());
            if !*open {
                return Ok(());
            }
            let up = TcpStream::connect(("127.0.0.1", upstream))?;
            up.set_nodelay(true)?;
            (&up).write_all(&request)?;
            // Read the answer by its Content-Length: waiting for the server to close costs more.
            read_message(&mut BufReader::new(up), false)?.unwrap_or_default()
        };
        client.write_all(&response)?;
    }
}

/// One HTTP/1.1 message with a Content-Length body (or none); a request gets `Connection:
/// close` (moto closes every connection anyway). None at end of stream.
fn read_message(from: &mut impl BufRead, request: bool) -> std::io::Result<Option<Vec<u8>>> {
    let (mut message, mut length) = (Vec::new(), 0usize);
    loop {
        let mut line = String::new();
        if from.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if !(request && lower.starts_with("connection:")) {
            message.extend_from_slice(line.as_bytes());
        }
    }
    if request {
        message.extend_from_slice(b"Connection: close\r\n");
    }
    message.extend_from_slice(b"\r\n");
    let start = message.len();
    message.resize(start + length, 0);
    from.read_exact(&mut message[start..])?;
    Ok(Some(message))
}

/// A small deterministic generator (the tests crate has no `rand`).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the contending tasks were granted, checked at every grant. A lease is entered after the
/// ledger granted it and its account removed before the task releases or hands it over, so what
/// the tracker holds is always inside what the ledger holds.
#[derive(Default)]
struct Tracker {
    /// slot -> (holder, account; None while being handed over)
    live: BTreeMap<u32, (String, Option<AccountId>)>,
    last_fence: BTreeMap<u32, u64>,
    grants: u64,
    handovers: u64,
    most_live: usize,
}

impl Tracker {
    fn granted(&mut self, slot: u32, fence: u64, holder: &str, account: &AccountId, handover: bool) {
        match self.live.get(&slot) {
            Some((h, None)) if handover && h == holder => {}
            Some(other) => panic!("slot {slot} granted to {holder} while {other:?} holds it"),
            None => assert!(!handover, "a hand-over of a slot not held"),
        }
        assert!(
            self.live.len() < SLOTS as usize || handover,
            "a 5th live holder: {holder} on slot {slot} besides {:?}",
            self.live
        );
        assert!(
            self.live.values().all(|(_, a)| a.as_ref() != Some(account)),
            "account {account:?} granted on slot {slot} to {holder} while live in {:?}",
            self.live
        );
        let last = self.last_fence.get(&slot).copied().unwrap_or(0);
        assert!(fence > last, "slot {slot}: fence {fence} granted after fence {last}");
        self.last_fence.insert(slot, fence);
        self.grants += 1;
        self.handovers += u64::from(handover);
        self.live.insert(slot, (holder.to_string(), Some(account.clone())));
        self.most_live = self.most_live.max(self.live.len());
    }

    fn handing_over(&mut self, slot: u32) {
        self.live.get_mut(&slot).expect("handed-over slot is live").1 = None;
    }

    fn releasing(&mut self, slot: u32, holder: &str) {
        let (h, _) = self.live.remove(&slot).expect("released slot was live");
        assert_eq!(h, holder);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn contending_holders_never_exceed_slots_or_share_an_account() {
    let moto = Moto::empty();
    let proxy = SerialProxy::new(moto.port);
    let client = dynamodb(&proxy.endpoint).await;
    // Two processes: a lease is sometimes released through the one that did not grant it (its
    // account lock is then left behind, and resolved by the account's next claim).
    let ledgers = Arc::new([DynamoLedger::new(client.clone(), TABLE), DynamoLedger::new(client, TABLE)]);
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let (lost, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    const NOW: u64 = 1_000_000;
    const EXPIRES: u64 = 1_000_000_000_000; // nothing expires here: releases free the slots
                                            // Until enough grants, or a time limit on a slow machine (moto answers ~100 requests/s).
    const ENOUGH: u64 = 80;
    let deadline = Instant::now() + Duration::from_secs(8);

    let mut tasks = Vec::new();
    for t in 0..24u64 {
        let (ledgers, tracker, lost, busy) = (ledgers.clone(), tracker.clone(), lost.clone(), busy.clone());
        tasks.push(tokio::spawn(async move {
            let holder = format!("holder-{t:02}");
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1).wrapping_mul(0x1000_0001));
            let me = (t % 2) as usize;
            let ledger = &ledgers[me];
            while Instant::now() < deadline && tracker.lock().unwrap().grants < ENOUGH {
                let view = ledger.view(&scope()).await.unwrap();
                let free: Vec<SlotRecord> = (0..SLOTS)
                    .map(|i| view.slots.iter().find(|s| s.slot == i).cloned().unwrap_or_else(|| SlotRecord::free(i)))
                    .filter(|s| !s.is_live(NOW))
                    .collect();
                if free.is_empty() {
                    tokio::time::sleep(Duration::from_millis(40 + rng.below(80))).await;
                    continue;
                }
                let slot = free[rng.below(free.len() as u64) as usize].clone();
                let mut acct = account(rng.below(6));
                let mut fence = match claim(ledger, slot.slot, slot.fence, &holder, &acct, NOW, EXPIRES).await {
                    Claim::Granted { fence } => fence,
                    Claim::Lost => {
                        lost.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10 + rng.below(40))).await;
                        continue;
                    }
                    Claim::AccountBusy => {
                        busy.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10 + rng.below(40))).await;
                        continue;
                    }
                };
                assert_eq!(fence, slot.fence + 1);
                tracker.lock().unwrap().granted(slot.slot, fence, &holder, &acct, false);
                // Hold it, sometimes handing it over to further accounts, then release it.
                loop {
                    tokio::time::sleep(Duration::from_millis(10 + rng.below(30))).await;
                    if rng.below(3) != 0 {
                        break;
                    }
                    let next = account(rng.below(6));
                    tracker.lock().unwrap().handing_over(slot.slot);
                    match claim(ledger, slot.slot, fence, &holder, &next, NOW, EXPIRES).await {
                        Claim::Granted { fence: f } => {
                            assert_eq!(f, fence + 1);
                            tracker.lock().unwrap().granted(slot.slot, f, &holder, &next, true);
                            (fence, acct) = (f, next);
                        }
                        Claim::AccountBusy => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Claim::Lost => panic!("{holder} lost its own live slot {} (fence {fence}) in a hand-over", slot.slot),
                    }
                }
                tracker.lock().unwrap().releasing(slot.slot, &holder);
                let via = if rng.below(4) == 0 { 1 - me } else { me };
                let released = ledgers[via].release(&scope(), slot.slot, fence).await.unwrap();
                assert!(released, "{holder} could not release slot {} fence {fence} ({acct:?})", slot.slot);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let (lost, busy) = (lost.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    let tracker = std::mem::take(&mut *tracker.lock().unwrap());
    let writes = ledgers[0].writes() + ledgers[1].writes();
    eprintln!(
        "grants {} ({} hand-overs), lost {lost}, account busy {busy}, most live at once {}, item writes {writes}",
        tracker.grants, tracker.handovers, tracker.most_live
    );
    assert!(tracker.grants >= 40, "too few grants to mean anything: {}", tracker.grants);
    assert!(tracker.handovers >= 5, "too few hand-overs: {}", tracker.handovers);
    assert!(lost >= 10 && busy >= 3, "too little contention: lost {lost}, busy {busy}");
    assert!(tracker.most_live >= 3, "slots were never held in parallel: {}", tracker.most_live);
    // Every grant raised its slot's fence by exactly one, and everything was released.
    let view = ledgers[0].view(&scope()).await.unwrap();
    for s in &view.slots {
        assert_eq!(s.fence, tracker.last_fence.get(&s.slot).copied().unwrap_or(0), "{s:?}");
        assert_eq!((s.holder.as_ref(), s.account.as_ref()), (None, None), "{s:?}");
    }
    assert_eq!(view.slots.iter().map(|s| s.fence).sum::<u64>(), tracker.grants);
    // Every account is free again, whatever locks were left behind.
    for i in 0..6 {
        let seen = slot_of(&ledgers[0], 0).await.fence;
        let granted = claim(&ledgers[0], 0, seen, "final", &account(i), NOW, EXPIRES).await;
        assert_eq!(granted, Claim::Granted { fence: seen + 1 }, "account {i}");
        assert!(ledgers[0].release(&scope(), 0, seen + 1).await.unwrap());
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_old_fence_is_dead() {
    let moto = Moto::empty();
    let (ledger, client) = ledger(&moto).await;
    let (a, b) = (account(1), account(2));
    assert_eq!(claim(&ledger, 0, 0, "h1", &a, 1_000_000, 2_000_000).await, Claim::Granted { fence: 1 });
    // A stale fence, or the lease still live (live while expires > now).
    assert_eq!(claim(&ledger, 0, 0, "h2", &b, 1_500_000, 3_000_000).await, Claim::Lost);
    assert_eq!(claim(&ledger, 0, 1, "h2", &b, 1_999_999, 3_000_000).await, Claim::Lost);
    assert_eq!(slot_of(&ledger, 0).await.holder.as_deref(), Some("h1"));
    assert_eq!(claim(&ledger, 0, 1, "h2", &b, 2_000_000, 3_000_000).await, Claim::Granted { fence: 2 });
    let taken = SlotRecord { slot: 0, fence: 2, holder: Some("h2".into()), account: Some(b.clone()), expires_us: 3_000_000 };
    assert_eq!(slot_of(&ledger, 0).await, taken);

    // Fencing: the old holder can neither extend nor free the new lease, through the ledger
    // that granted it or through another process's.
    let other_process = DynamoLedger::new(client, TABLE);
    for l in [&ledger, &other_process] {
        assert!(!l.renew(&scope(), 0, 1, 9_000_000).await.unwrap());
        assert!(!l.release(&scope(), 0, 1).await.unwrap());
        assert_eq!(slot_of(&ledger, 0).await, taken, "the new holder's record is untouched");
    }
    // A claim with the seen fence 1 loses: the fence moved on.
    assert_eq!(claim(&ledger, 0, 1, "h3", &a, 5_000_000, 6_000_000).await, Claim::Lost);
    // The new holder's fence works, from any process.
    assert!(other_process.renew(&scope(), 0, 2, 4_000_000).await.unwrap());
    assert_eq!(slot_of(&ledger, 0).await.expires_us, 4_000_000);
    assert!(ledger.release(&scope(), 0, 2).await.unwrap());
    assert!(!ledger.release(&scope(), 0, 2).await.unwrap(), "released twice");
    assert!(!ledger.renew(&scope(), 0, 2, 9_000_000).await.unwrap(), "renewed after its release");
    let freed = slot_of(&ledger, 0).await;
    assert_eq!((freed.fence, freed.holder, freed.account), (2, None, None), "the fence stays");
    assert_eq!(claim(&ledger, 0, 2, "h3", &a, 2_500_000, 6_000_000).await, Claim::Granted { fence: 3 }, "free after release");
}

#[tokio::test]
async fn an_account_is_held_by_one_live_slot_at_most() {
    let moto = Moto::empty();
    let (ledger, client) = ledger(&moto).await;
    let (a, b) = (account(1), account(2));
    assert_eq!(claim(&ledger, 0, 0, "h1", &a, 1_000_000, 2_000_000).await, Claim::Granted { fence: 1 });
    assert_eq!(claim(&ledger, 1, 0, "h2", &a, 1_500_000, 3_000_000).await, Claim::AccountBusy);
    assert_eq!(slot_of(&ledger, 1).await, SlotRecord::free(1), "a busy account leaves the slot as it was");
    // A slot that changed wins over a busy account (as MemoryLedger).
    assert_eq!(claim(&ledger, 0, 0, "h2", &a, 1_500_000, 3_000_000).await, Claim::Lost);
    assert_eq!(
        claim(&ledger, 1, 0, "h2", &b, 1_500_000, 3_000_000).await,
        Claim::Granted { fence: 1 },
        "other accounts are free"
    );

    // Released: free at once.
    assert!(ledger.release(&scope(), 0, 1).await.unwrap());
    assert_eq!(lock_of(&client, &a).await, None, "the release deleted the lock");
    assert_eq!(claim(&ledger, 2, 0, "h2", &a, 1_600_000, 3_000_000).await, Claim::Granted { fence: 1 });

    // Expired without a release: free from its expiry on.
    assert_eq!(claim(&ledger, 3, 0, "h3", &a, 2_999_999, 5_000_000).await, Claim::AccountBusy);
    assert_eq!(claim(&ledger, 3, 0, "h3", &a, 3_000_000, 5_000_000).await, Claim::Granted { fence: 1 });
    let view = ledger.view(&scope()).await.unwrap();
    let live_a: Vec<u32> =
        view.slots.iter().filter(|s| s.is_live(3_000_000) && s.account.as_ref() == Some(&a)).map(|s| s.slot).collect();
    assert_eq!(live_a, vec![3]);
    assert_eq!(view.slots.iter().find(|s| s.slot == 2).unwrap().holder.as_deref(), Some("h2"), "expired, not released");

    // The expired lease's holder comes back late: its renewal is refused (the account is held
    // by slot 3 now: renewing would make two live slots hold it), its release frees its slot and
    // leaves the account with slot 3.
    assert!(!ledger.renew(&scope(), 2, 1, 9_000_000).await.unwrap());
    assert!(ledger.release(&scope(), 2, 1).await.unwrap());
    assert_eq!(slot_of(&ledger, 2).await.holder, None);
    assert_eq!(lock_of(&client, &a).await, Some(("3".into(), "1".into())));
    assert_eq!(claim(&ledger, 0, 1, "h4", &a, 3_500_000, 6_000_000).await, Claim::AccountBusy, "slot 3 still holds it");
    // Renewing slot 3 keeps the account with it past its first expiry.
    assert!(ledger.renew(&scope(), 3, 1, 8_000_000).await.unwrap());
    assert_eq!(claim(&ledger, 0, 1, "h4", &a, 5_000_000, 9_000_000).await, Claim::AccountBusy, "renewed: still live");
    assert_eq!(claim(&ledger, 0, 1, "h4", &a, 8_000_000, 9_000_000).await, Claim::Granted { fence: 2 });

    // Another scope (instance) has its own slots and locks.
    let other = Scope { region: "eu-west-1".into(), ..scope() };
    let c = ClaimRequest { slot: 0, seen_fence: 0, holder: "h9", account: &a, now_us: 8_000_000, expires_us: 9_000_000 };
    assert_eq!(ledger.claim(&other, &c).await.unwrap(), Claim::Granted { fence: 1 });
    assert_eq!(ledger.view(&other).await.unwrap().slots.len(), 1);
}

#[tokio::test]
async fn a_holder_hands_its_live_slot_over_to_its_next_account() {
    let moto = Moto::empty();
    let (ledger, client) = ledger(&moto).await;
    let (a, b, c) = (account(1), account(2), account(3));
    assert_eq!(claim(&ledger, 0, 0, "h1", &a, 1_000_000, 5_000_000).await, Claim::Granted { fence: 1 });
    // Another holder cannot take the live slot; its holder can, for its next account.
    assert_eq!(claim(&ledger, 0, 1, "h2", &b, 2_000_000, 5_000_000).await, Claim::Lost);
    assert_eq!(claim(&ledger, 0, 1, "h1", &b, 2_000_000, 6_000_000).await, Claim::Granted { fence: 2 });
    assert_eq!(
        slot_of(&ledger, 0).await,
        SlotRecord { slot: 0, fence: 2, holder: Some("h1".into()), account: Some(b.clone()), expires_us: 6_000_000 }
    );
    // The previous account is free at once (its lock went with the hand-over); the new one is held.
    assert_eq!(lock_of(&client, &a).await, None);
    assert_eq!(claim(&ledger, 1, 0, "h2", &b, 2_000_000, 5_000_000).await, Claim::AccountBusy);
    assert_eq!(claim(&ledger, 1, 0, "h2", &a, 2_000_000, 5_000_000).await, Claim::Granted { fence: 1 });
    // A hand-over to an account another slot holds is refused; to the same account it is a plain renewal of the lock.
    assert_eq!(claim(&ledger, 0, 2, "h1", &a, 2_500_000, 6_000_000).await, Claim::AccountBusy);
    assert_eq!(claim(&ledger, 0, 2, "h1", &b, 2_500_000, 7_000_000).await, Claim::Granted { fence: 3 });
    assert_eq!(lock_of(&client, &b).await, Some(("0".into(), "3".into())));
    // The old fences are dead.
    assert!(!ledger.renew(&scope(), 0, 2, 9_000_000).await.unwrap());
    assert!(!ledger.release(&scope(), 0, 1).await.unwrap());

    // A hand-over of a lease granted by another process: the ledger does not know the previous
    // account, so its lock stays behind, naming the ended lease; the account's next claim
    // finds that lease superseded and takes the lock.
    let other_process = DynamoLedger::new(client.clone(), TABLE);
    assert_eq!(claim(&other_process, 0, 3, "h1", &c, 3_000_000, 7_000_000).await, Claim::Granted { fence: 4 });
    assert_eq!(lock_of(&client, &b).await, Some(("0".into(), "3".into())), "left behind");
    assert_eq!(claim(&ledger, 2, 0, "h3", &b, 3_000_000, 7_000_000).await, Claim::Granted { fence: 1 });
    assert_eq!(lock_of(&client, &b).await, Some(("2".into(), "1".into())));
    // And a release by another process leaves a lock behind that the next claim resolves too.
    assert!(other_process.release(&scope(), 2, 1).await.unwrap());
    assert_eq!(lock_of(&client, &b).await, Some(("2".into(), "1".into())), "left behind");
    assert_eq!(claim(&ledger, 3, 0, "h3", &b, 3_000_000, 7_000_000).await, Claim::Granted { fence: 1 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_reservations_never_overlap() {
    let moto = Moto::empty();
    let proxy = SerialProxy::new(moto.port);
    let client = dynamodb(&proxy.endpoint).await;
    let ledger = Arc::new(DynamoLedger::new(client, TABLE));
    const BASE: u64 = 1_000_000_000;
    const INTERVAL: u64 = 50_000;
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (t + 7).wrapping_mul(0x0100_0000_01B3));
            let mut got = Vec::new();
            for _ in 0..8 {
                let count = 1 + rng.below(4) as u32;
                let first = ledger.reserve_requests(&scope(), count, INTERVAL, BASE).await.unwrap();
                got.push((first, count));
            }
            got
        }));
    }
    let mut blocks = Vec::new();
    for task in tasks {
        blocks.extend(task.await.unwrap());
    }
    assert_eq!(blocks.len(), 128);
    let mut times: Vec<u64> =
        blocks.iter().flat_map(|&(first, count)| (0..u64::from(count)).map(move |i| first + i * INTERVAL)).collect();
    times.sort_unstable();
    // No two reserved times closer than the interval: the blocks tile the time line exactly.
    for pair in times.windows(2) {
        assert!(pair[1] >= pair[0] + INTERVAL, "reservations overlap: {} and {}", pair[0], pair[1]);
    }
    let expected: Vec<u64> = (0..times.len() as u64).map(|k| BASE + k * INTERVAL).collect();
    assert_eq!(times, expected, "reservations start at now and leave no gaps");
    // Any one-second window holds at most 1e6 / interval (+1) of them.
    let per_window = 1_000_000 / INTERVAL + 1;
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|u| **u < t + 1_000_000).count() as u64;
        assert!(in_window <= per_window, "{in_window} requests in the second from {t}");
    }
    // One write each, but a task's first reservation may guess the wrong case (the ledger's hint
    // says "behind now" until a reservation found the item ahead).
    assert!((128..=128 + 16 + 1).contains(&ledger.writes()), "{} writes for 128 reservations", ledger.writes());

    // Sequentially: the first time is max(now, the next free time).
    let next = *times.last().unwrap() + INTERVAL;
    assert_eq!(ledger.reserve_requests(&scope(), 2, INTERVAL, BASE).await.unwrap(), next, "now is behind: queued");
    let later = next + 10 * 1_000_000;
    assert_eq!(ledger.reserve_requests(&scope(), 1, INTERVAL, later).await.unwrap(), later, "now is ahead: at once");
    assert_eq!(ledger.reserve_requests(&scope(), 1, INTERVAL, later).await.unwrap(), later + INTERVAL);
    assert_eq!(
        ledger.reserve_requests(&scope(), 1, INTERVAL, later + INTERVAL).await.unwrap(),
        later + 2 * INTERVAL,
        "now = next"
    );
    // Another scope has its own rate item; the ledger, which last found one ahead of now, tries
    // that case first and finds no item.
    let other = Scope { region: "eu-west-1".into(), ..scope() };
    assert_eq!(ledger.reserve_requests(&other, 3, INTERVAL, BASE).await.unwrap(), BASE);
    assert_eq!(ledger.reserve_requests(&other, 1, INTERVAL, BASE).await.unwrap(), BASE + 3 * INTERVAL);
}

#[tokio::test]
async fn writes_are_counted_per_item() {
    let moto = Moto::empty();
    let (ledger, client) = ledger(&moto).await;
    let (a, b) = (account(1), account(2));
    let mut expect = 0;
    let mut step = |items: u64, what: &str, writes: u64| {
        expect += items;
        assert_eq!(writes, expect, "after {what}");
    };
    ledger.view(&scope()).await.unwrap();
    step(0, "view", ledger.writes());
    assert_eq!(claim(&ledger, 0, 0, "h1", &a, 1, 1_000_000).await, Claim::Granted { fence: 1 });
    step(2, "claim (slot + account lock)", ledger.writes());
    assert_eq!(claim(&ledger, 0, 0, "h2", &b, 1, 1_000_000).await, Claim::Lost);
    step(2, "a lost claim (the attempt writes both)", ledger.writes());
    assert_eq!(claim(&ledger, 1, 0, "h2", &a, 1, 1_000_000).await, Claim::AccountBusy);
    step(2, "a claim of a busy account (+ a read of the slot holding it)", ledger.writes());
    assert!(ledger.renew(&scope(), 0, 1, 2_000_000).await.unwrap());
    step(1, "renew (the slot alone)", ledger.writes());
    assert_eq!(claim(&ledger, 0, 1, "h1", &b, 1, 2_000_000).await, Claim::Granted { fence: 2 });
    step(3, "hand-over to another account (slot + new lock + old lock deleted)", ledger.writes());
    assert_eq!(claim(&ledger, 0, 2, "h1", &b, 1, 2_000_000).await, Claim::Granted { fence: 3 });
    step(2, "hand-over to the same account", ledger.writes());
    assert!(ledger.release(&scope(), 0, 3).await.unwrap());
    step(2, "release (slot + lock deleted)", ledger.writes());
    assert!(!ledger.release(&scope(), 0, 3).await.unwrap());
    step(1, "release of a lease that is gone", ledger.writes());
    assert!(!ledger.renew(&scope(), 0, 3, 5).await.unwrap());
    step(1, "renew of a lease that is gone", ledger.writes());
    ledger.reserve_requests(&scope(), 4, 50_000, 1).await.unwrap();
    step(1, "reserve_requests (rate item behind now)", ledger.writes());
    ledger.reserve_requests(&scope(), 4, 50_000, 1).await.unwrap();
    step(2, "reserve_requests (now ahead: the first guess fails)", ledger.writes());
    ledger.reserve_requests(&scope(), 4, 50_000, 1).await.unwrap();
    step(1, "reserve_requests (ahead, as last time)", ledger.writes());
    let record = HolderRecord { holder: "h1".into(), waiting: 3, expires_us: 5_000_000 };
    ledger.put_holder(&scope(), &record).await.unwrap();
    step(1, "put_holder", ledger.writes());
    ledger.remove_holder(&scope(), "h1").await.unwrap();
    step(1, "remove_holder", ledger.writes());

    // A lock left behind (the lease was released by another process) costs its account's next
    // claim a read and a second transaction: slot + lock + the old lease's slot marked.
    assert_eq!(claim(&ledger, 0, 3, "h1", &a, 1, 1_000_000).await, Claim::Granted { fence: 4 });
    step(2, "claim", ledger.writes());
    let other_process = DynamoLedger::new(client.clone(), TABLE);
    assert!(other_process.release(&scope(), 0, 4).await.unwrap());
    assert_eq!(other_process.writes(), 1, "a release without the account: the slot alone");
    assert_eq!(claim(&ledger, 1, 0, "h2", &a, 1, 1_000_000).await, Claim::Granted { fence: 1 });
    step(2 + 3, "claim over a lock left behind", ledger.writes());

    // What is in the table: the scope's partition and its locks, as TABLE.md describes them.
    let items = client.scan().table_name(TABLE).send().await.unwrap().items.unwrap_or_default();
    let keys: BTreeSet<(String, String)> =
        items.iter().map(|i| (i["pk"].as_s().unwrap().clone(), i["sk"].as_s().unwrap().clone())).collect();
    let (quota, locks) = (format!("QUOTA#{}", scope().key()), format!("QUOTALOCK#{}", scope().key()));
    let expected: BTreeSet<(String, String)> = [
        (quota.clone(), "RATE".to_string()),
        (quota.clone(), "SLOT#0000".to_string()),
        (quota.clone(), "SLOT#0001".to_string()),
        (locks.clone(), a.as_str().to_string()),
    ]
    .into();
    assert_eq!(keys, expected);
    assert_eq!(lock_of(&client, &a).await, Some(("1".into(), "1".into())));
}

#[tokio::test]
async fn holders_views_page_and_malformed_items_are_named() {
    let moto = Moto::empty();
    let (ledger, client) = ledger(&moto).await;
    let ledger = ledger.with_page_size(3);
    for (i, name) in ["h-b", "h-a", "h-c"].iter().enumerate() {
        let record = HolderRecord { holder: name.to_string(), waiting: i as u32, expires_us: 5_000_000 + i as u64 };
        ledger.put_holder(&scope(), &record).await.unwrap();
    }
    ledger.put_holder(&scope(), &HolderRecord { holder: "h-a".into(), waiting: 7, expires_us: 9_000_000 }).await.unwrap();
    for slot in 0..12 {
        assert_eq!(claim(&ledger, slot, 0, "h-a", &account(slot as u64), 1, 1_000_000).await, Claim::Granted { fence: 1 });
    }
    ledger.reserve_requests(&scope(), 1, 1, 1).await.unwrap();
    ledger.remove_holder(&scope(), "h-c").await.unwrap();
    let view = ledger.view(&scope()).await.unwrap();
    assert_eq!(
        view.holders,
        vec![
            HolderRecord { holder: "h-a".into(), waiting: 7, expires_us: 9_000_000 },
            HolderRecord { holder: "h-b".into(), waiting: 0, expires_us: 5_000_000 },
        ]
    );
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
