//! The ledger under the faults DynamoDB produces (injected by `proxy::SerialProxy`): answers lost
//! after the request was applied, late duplicates, transaction conflicts and throttling, one by
//! one and at random under contention. Whatever happens, a call never reports a write that did
//! not happen, never changes a later lease, and a transient fault ends as `Transient` after a
//! bounded number of attempts.

use super::proxy::{Chaos, Fault, Seen};
use super::*;

fn of<'a>(seen: &'a [Seen], op: &str) -> Vec<&'a Seen> {
    seen.iter().filter(|s| s.op == op).collect()
}

fn transient<T: std::fmt::Debug>(r: Result<T, FanoutError>) -> String {
    match r {
        Err(FanoutError::Transient { message, .. }) => message,
        other => panic!("expected a Transient error, got {other:?}"),
    }
}

const TWI: &str = "TransactWriteItems";

#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_granted_once() {
    let moto = Moto::empty();
    let (ledger, proxy, client) = ledger(&moto).await;
    let (a, b) = (account(1), account(2));
    proxy.take_seen();
    proxy.inject(TWI, Fault::DropAnswer, 1);
    assert_eq!(claim(&ledger, 0, 0, "h1", &a).await, Claim::Granted { fence: 1 });
    let seen = proxy.take_seen();
    let sent = of(&seen, TWI);
    // The SDK sent it again under the same ClientRequestToken (DynamoDB would answer that retry
    // with success); moto evaluates it again, finds the slot moved on, and the ledger sees its
    // own claim in the item returned.
    assert_eq!(sent.len(), 2, "{seen:?}");
    assert_eq!(sent[0].fault, Some(Fault::DropAnswer));
    assert!(sent[0].token.is_some() && sent[0].token == sent[1].token, "{sent:?}");
    let s = slot_of(&ledger, 0).await;
    assert_eq!((s.fence, s.holder.as_deref(), s.locked_account()), (1, Some("h1"), Some(&a)));
    assert_eq!(ledger.writes(), 2, "one request of two items (the SDK's retry is not another write of ours)");

    // A hand-over whose answer is lost: the lock of the account it leaves went with it.
    proxy.inject(TWI, Fault::DropAnswer, 1);
    assert_eq!(claim(&ledger, 0, 1, "h1", &b).await, Claim::Granted { fence: 2 });
    assert_eq!((lock_of(&client, &a).await, lock_of(&client, &b).await), (None, Some((0, 2))));
    // Another holder's claim of the same slot, seen fence and all, is still refused.
    assert_eq!(claim(&ledger, 0, 1, "h2", &a).await, Claim::Lost);
    // Applied and answered with a 500: AWS does not say whether such a write happened, so the
    // ledger looks, as for a lost answer.
    proxy.inject(TWI, Fault::ServerError, 1);
    assert_eq!(claim(&ledger, 1, 0, "h3", &a).await, Claim::Granted { fence: 1 });
    assert_eq!(lock_of(&client, &a).await, Some((1, 1)));
    assert_locks_match_slots(&ledger, &client).await;
}

#[tokio::test]
async fn a_claim_whose_every_answer_was_lost_is_transient_and_its_slot_is_left_to_its_holder() {
    let moto = Moto::empty();
    let (ledger, proxy, client) = ledger(&moto).await;
    let (a, b) = (account(1), account(2));
    proxy.take_seen();
    proxy.inject(TWI, Fault::DropAnswer, 3);
    let started = Instant::now();
    let message = transient(ledger.claim(&scope(), &request(0, 0, "h1", &a, 1_000)).await);
    let seen = proxy.take_seen();
    eprintln!("every answer lost: {} requests, {:?}, `{message}`", of(&seen, TWI).len(), started.elapsed());
    assert_eq!(of(&seen, TWI).len(), 3, "the SDK's three attempts, then the error: {seen:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "bounded: {:?}", started.elapsed());
    // The first request was applied: the slot carries the holder's name, which is how its
    // holder finds (adopts) it at its next view; for everyone else it is taken.
    let s = slot_of(&ledger, 0).await;
    assert_eq!((s.fence, s.holder.as_deref(), s.locked_account()), (1, Some("h1"), Some(&a)));
    assert_eq!(claim(&ledger, 0, 0, "h2", &b).await, Claim::Lost);
    assert_eq!(claim(&ledger, 1, 0, "h2", &a).await, Claim::AccountBusy);
    // The holder that adopted it releases it as any other.
    assert!(ledger.release(&scope(), 0, 1).await.unwrap());
    assert_locks_match_slots(&ledger, &client).await;
}

#[tokio::test]
async fn a_release_or_park_whose_answer_was_lost_frees_only_its_own_lease() {
    let moto = Moto::empty();
    let (ledger, proxy, client) = ledger(&moto).await;
    let (a, b, c) = (account(1), account(2), account(3));
    assert_eq!(claim(&ledger, 0, 0, "h1", &a).await, Claim::Granted { fence: 1 });
    proxy.take_seen();
    proxy.inject(TWI, Fault::DropAnswer, 1);
    assert!(ledger.release(&scope(), 0, 1).await.unwrap(), "freed by the request whose answer was lost: reported");
    let seen = proxy.take_seen();
    assert_eq!(of(&seen, TWI).len(), 2);
    assert_eq!(lock_of(&client, &a).await, None);
    assert!(!ledger.release(&scope(), 0, 1).await.unwrap(), "released twice");

    // Every answer lost: Transient, though the slot was freed. Another holder takes it; the
    // first holder trying again (as the policy does) changes nothing of the new lease.
    assert_eq!(claim(&ledger, 0, 1, "h1", &a).await, Claim::Granted { fence: 2 });
    proxy.inject(TWI, Fault::DropAnswer, 3);
    transient(ledger.release(&scope(), 0, 2).await);
    assert_eq!(claim(&ledger, 0, 2, "h2", &b).await, Claim::Granted { fence: 3 });
    assert!(!ledger.release(&scope(), 0, 2).await.unwrap());
    assert!(!ledger.park(&scope(), 0, 2, Some("req-old")).await.unwrap());
    let s = slot_of(&ledger, 0).await;
    assert_eq!((s.fence, s.holder.as_deref(), s.locked_account()), (3, Some("h2"), Some(&b)));
    assert_eq!(s.operation.unwrap().request_id, None);

    // A park whose answer was lost is applied again by the SDK's retry (its condition still
    // holds) and reported; the account stays locked.
    proxy.inject("UpdateItem", Fault::DropAnswer, 1);
    assert!(ledger.park(&scope(), 0, 3, Some("req-3")).await.unwrap());
    let s = slot_of(&ledger, 0).await;
    let request_id = s.operation.as_ref().and_then(|o| o.request_id.as_deref());
    assert_eq!((s.holder.as_deref(), s.locked_account(), request_id), (None, Some(&b), Some("req-3")));
    assert_eq!(lock_of(&client, &b).await, Some((0, 3)));
    assert_eq!(claim(&ledger, 1, 0, "h3", &b).await, Claim::AccountBusy);
    // Every answer of a park lost: Transient; parked all the same; taken over once checked.
    assert_eq!(claim(&ledger, 0, 3, "h3", &c).await, Claim::Granted { fence: 4 });
    proxy.inject("UpdateItem", Fault::DropAnswer, 3);
    transient(ledger.park(&scope(), 0, 4, None).await);
    assert_eq!(slot_of(&ledger, 0).await.holder, None);
    assert_locks_match_slots(&ledger, &client).await;
}

#[tokio::test]
async fn a_late_duplicate_never_changes_a_later_lease() {
    let moto = Moto::empty();
    let (ledger, proxy, client) = ledger(&moto).await;
    let (a, b, c) = (account(1), account(2), account(3));
    // Each faulted request reaches moto 1.5 s late, after the SDK gave up on it (1 s attempt
    // timeout) and its retry was applied; by then the slot has a new lease.
    let late = Fault::Delay(Duration::from_millis(1_500));
    let settle = || tokio::time::sleep(Duration::from_millis(1_200));
    proxy.take_seen();

    assert_eq!(claim(&ledger, 0, 0, "h1", &a).await, Claim::Granted { fence: 1 });
    proxy.inject(TWI, late, 1);
    assert!(ledger.release(&scope(), 0, 1).await.unwrap());
    assert_eq!(claim(&ledger, 0, 1, "h2", &b).await, Claim::Granted { fence: 2 });
    settle().await; // the first release request lands now: refused by its fence

    proxy.inject("UpdateItem", late, 1);
    assert!(ledger.park(&scope(), 0, 2, Some("req-2")).await.unwrap());
    assert_eq!(claim(&ledger, 0, 2, "h3", &c).await, Claim::Granted { fence: 3 });
    settle().await; // the first park request lands now: it would remove h3 were it not fenced

    proxy.inject(TWI, late, 1);
    assert_eq!(claim(&ledger, 1, 0, "h4", &a).await, Claim::Granted { fence: 1 });
    assert!(ledger.release(&scope(), 1, 1).await.unwrap());
    settle().await; // the first claim request lands now: it would lock `a` again were it not fenced

    let delayed: Vec<Seen> = proxy.take_seen().into_iter().filter(|s| s.fault == Some(late)).collect();
    assert_eq!(delayed.len(), 3, "{delayed:?}");
    let s = slot_of(&ledger, 0).await;
    assert_eq!((s.fence, s.holder.as_deref(), s.locked_account()), (3, Some("h3"), Some(&c)));
    assert_eq!(slot_of(&ledger, 1).await, SlotRecord { fence: 1, ..SlotRecord::free(1) });
    assert_eq!(locks(&client).await.len(), 1, "only c is locked");
    assert_locks_match_slots(&ledger, &client).await;
}

#[tokio::test]
async fn transaction_conflicts_are_retried_as_new_requests_then_transient() {
    let moto = Moto::empty();
    let (ledger, proxy, client) = ledger(&moto).await;
    let (a, b) = (account(1), account(2));
    proxy.take_seen();
    proxy.inject(TWI, Fault::Conflict, 4);
    assert_eq!(claim(&ledger, 0, 0, "h1", &a).await, Claim::Granted { fence: 1 });
    let seen = proxy.take_seen();
    let tokens: BTreeSet<_> = of(&seen, TWI).iter().map(|s| s.token.clone().unwrap()).collect();
    assert_eq!((of(&seen, TWI).len(), tokens.len()), (5, 5), "a cancelled transaction is sent again as a new request");
    assert_eq!(ledger.writes(), 10, "each cancelled attempt counts its two items");

    proxy.inject(TWI, Fault::Conflict, 5);
    let message = transient(ledger.claim(&scope(), &request(1, 0, "h2", &b, 1_000)).await);
    assert!(message.contains("cancelled 5 times") && message.contains("TransactionConflict"), "{message}");
    assert_eq!((slot_of(&ledger, 1).await, lock_of(&client, &b).await), (SlotRecord::free(1), None), "nothing written");

    proxy.inject(TWI, Fault::Conflict, 5);
    transient(ledger.release(&scope(), 0, 1).await);
    assert_eq!(slot_of(&ledger, 0).await.holder.as_deref(), Some("h1"), "not released");
    assert!(ledger.release(&scope(), 0, 1).await.unwrap());
    assert_locks_match_slots(&ledger, &client).await;
}

#[tokio::test]
async fn throttling_ends_as_transient_after_bounded_attempts() {
    let moto = Moto::empty();
    let (ledger, proxy, client) = ledger(&moto).await;
    const CAP: u64 = 30_000_000;
    let t = 10_000_000;
    // A queue of reservations, so that the ledger's first guess is "queued" from now on.
    assert_eq!(ledger.reserve_requests(&scope(), 2, 100, t, CAP).await.unwrap(), t);
    assert_eq!(ledger.reserve_requests(&scope(), 1, 100, t, CAP).await.unwrap(), t + 200);
    let mut next = t + 300;
    for code in ["ThrottlingException", "ProvisionedThroughputExceededException"] {
        proxy.take_seen();
        // Two throttles: the SDK's third attempt gets through.
        proxy.inject("UpdateItem", Fault::Throttle(code), 2);
        assert_eq!(ledger.reserve_requests(&scope(), 1, 100, t, CAP).await.unwrap(), next, "{code}");
        next += 100;
        // Three: the error, Transient (DynamoDB's throttling is not Identity Center's).
        proxy.inject("UpdateItem", Fault::Throttle(code), 3);
        let started = Instant::now();
        let message = transient(ledger.reserve_requests(&scope(), 1, 100, t, CAP).await);
        assert!(message.contains(code), "{message}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        let seen = proxy.take_seen();
        let throttled = of(&seen, "UpdateItem").iter().filter(|s| s.fault.is_some()).count();
        assert_eq!((throttled, of(&seen, "UpdateItem").len()), (5, 6), "{code}: {seen:?}");
        // Nothing was reserved by the refused call.
        assert_eq!(ledger.reserve_requests(&scope(), 1, 100, t, CAP).await.unwrap(), next, "{code}");
        next += 100;
    }
    let a = account(1);
    proxy.inject(TWI, Fault::Throttle("ThrottlingException"), 3);
    transient(ledger.claim(&scope(), &request(0, 0, "h1", &a, 1_000)).await);
    assert_eq!((slot_of(&ledger, 0).await, lock_of(&client, &a).await), (SlotRecord::free(0), None));
    let h = HolderRecord { holder: "h1".into(), waiting: 1, expires_us: 5_000_000, uncertainty_us: 0 };
    proxy.inject("PutItem", Fault::Throttle("ProvisionedThroughputExceededException"), 3);
    transient(ledger.put_holder(&scope(), &h).await);
    proxy.inject("Query", Fault::Throttle("ThrottlingException"), 3);
    transient(ledger.view(&scope()).await);
    assert!(ledger.view(&scope()).await.unwrap().holders.is_empty());
}

/// Many holders under random faults: every answer the ledger gives is checked against the table
/// at once, and the invariants hold at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn contention_under_random_faults_keeps_every_answer_true() {
    let moto = Moto::empty();
    let (ledger, proxy, client) = ledger(&moto).await;
    drop(ledger);
    let ledgers = Arc::new([DynamoLedger::new(dynamodb(&proxy.endpoint).await, TABLE), DynamoLedger::new(dynamodb(&proxy.endpoint).await, TABLE)]);
    proxy.take_seen();
    proxy.chaos(0x5EED_F00D, Chaos { drop_answer: 40, conflict: 60, throttle: 40 });
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let (errors, adopted, refused_after_loss) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + Duration::from_secs(12);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch(ledgers.clone(), stop.clone());
    let mut tasks = Vec::new();
    for t in 0..12u64 {
        let (ledgers, tracker, errors, adopted, refused_after_loss) =
            (ledgers.clone(), tracker.clone(), errors.clone(), adopted.clone(), refused_after_loss.clone());
        tasks.push(tokio::spawn(async move {
            let holder = format!("holder-{t:02}");
            let mut rng = Rng(0xA076_1D64_78BD_642F ^ (t + 3).wrapping_mul(0x2545_F491));
            let ledger = &ledgers[(t % 2) as usize];
            // A call that may fail transiently, retried until it answers.
            macro_rules! answer {
                ($call:expr) => {
                    loop {
                        match $call.await {
                            Ok(v) => break v,
                            Err(e) => {
                                assert!(matches!(e, FanoutError::Transient { .. }), "{e}");
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                };
            }
            while Instant::now() < deadline && tracker.lock().unwrap().grants < 60 {
                let view = answer!(ledger.view(&scope()));
                let open: Vec<SlotRecord> = (0..SLOTS)
                    .map(|i| view.slots.iter().find(|s| s.slot == i).cloned().unwrap_or_else(|| SlotRecord::free(i)))
                    .filter(|s| s.holder.is_none())
                    .collect();
                if open.is_empty() {
                    tokio::time::sleep(Duration::from_millis(30 + rng.below(60))).await;
                    continue;
                }
                let slot = open[rng.below(open.len() as u64) as usize].clone();
                let acct = account(rng.below(6));
                let fence = match ledger.claim(&scope(), &request(slot.slot, slot.fence, &holder, &acct, 1_000)).await {
                    Ok(Claim::Granted { fence }) => fence,
                    Ok(_) => continue,
                    Err(e) => {
                        // Unknown outcome: the holder adopts the slot if its name is on it.
                        assert!(matches!(e, FanoutError::Transient { .. }), "{e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                        let now = answer!(ledger.view(&scope()));
                        let s = now.slots.iter().find(|s| s.slot == slot.slot);
                        if !s.is_some_and(|s| s.holder.as_deref() == Some(holder.as_str()) && s.fence == slot.fence + 1) {
                            continue;
                        }
                        adopted.fetch_add(1, Ordering::Relaxed);
                        slot.fence + 1
                    }
                };
                // A grant is true: the slot is ours under that fence, for that account.
                let s = answer!(ledger.view(&scope())).slots.into_iter().find(|s| s.slot == slot.slot).unwrap();
                assert_eq!((s.fence, s.holder.as_deref(), s.locked_account()), (fence, Some(holder.as_str()), Some(&acct)));
                tracker.lock().unwrap().granted(slot.slot, fence, &holder, &acct, false);
                tokio::time::sleep(Duration::from_millis(10 + rng.below(30))).await;
                let park = rng.below(4) == 0;
                tracker.lock().unwrap().ending(slot.slot, &holder, park.then(|| acct.clone()));
                // False after an error: the errored call was applied.
                let mut first = true;
                let refused = loop {
                    let ended = if park { ledger.park(&scope(), slot.slot, fence, Some("req")).await } else { ledger.release(&scope(), slot.slot, fence).await };
                    match ended {
                        Ok(done) => break !done && first,
                        Err(e) => {
                            assert!(matches!(e, FanoutError::Transient { .. }), "{e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                            first = false;
                        }
                    }
                };
                // And the end is true: released or parked under our fence, or taken since.
                let s = answer!(ledger.view(&scope())).slots.into_iter().find(|s| s.slot == slot.slot).unwrap();
                assert!(s.fence > fence || (s.holder.is_none() && s.locked_account() == park.then_some(&acct)), "{s:?}");
                if refused {
                    // Only a request applied with its answer lost, the freed slot claimed by
                    // another holder before the SDK's retry: moto evaluates that retry again
                    // (DynamoDB answers it success by its ClientRequestToken). False is the
                    // safe wrong answer; the policy ignores it.
                    assert!(s.fence > fence, "{holder}: its own slot {} refused, and nobody took it: {s:?}", slot.slot);
                    refused_after_loss.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let views = watcher.await.unwrap();
    proxy.calm();
    let seen = proxy.take_seen();
    let count = |f: fn(&Fault) -> bool| seen.iter().filter(|s| s.fault.as_ref().is_some_and(f)).count();
    let tracker = std::mem::take(&mut *tracker.lock().unwrap());
    eprintln!(
        "under faults: {} requests, {} answers dropped, {} conflicts, {} throttles; grants {} ({} parked slots taken over), {} adopted after an error, {} ends answered false after a lost answer, {} transient errors, {views} views checked",
        seen.len(),
        count(|f| *f == Fault::DropAnswer),
        count(|f| *f == Fault::Conflict),
        count(|f| matches!(f, Fault::Throttle(_))),
        tracker.grants,
        tracker.takeovers,
        adopted.load(Ordering::Relaxed),
        refused_after_loss.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    assert!(tracker.grants >= 25, "too few grants: {}", tracker.grants);
    assert!(count(|f| *f == Fault::DropAnswer) >= 10 && count(|f| *f == Fault::Conflict) >= 5, "too few faults");
    let view = ledgers[0].view(&scope()).await.unwrap();
    assert_eq!(view.slots.iter().map(|s| s.fence).sum::<u64>(), tracker.grants, "every grant, and only grants, raised a fence");
    assert_locks_match_slots(&ledgers[0], &client).await;
}
