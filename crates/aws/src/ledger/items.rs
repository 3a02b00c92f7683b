//! The ledger's items: keys, and slot, lock and holder items to and from DynamoDB attributes
//! (layout in `crates/aws/TABLE.md`, "Quota ledger").

use crate::dynamo::{get_s, key, n, s, Item, TTL_ATTRIBUTE};
use sso_fanout_core::clock::unix_now;
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::{Operation, Scope};
use sso_fanout_core::store::ledger::{ClaimRequest, HolderRecord, SlotOperation, SlotRecord};
use sso_fanout_core::{FanoutError, Result};
use aws_sdk_dynamodb::types::AttributeValue;

pub(super) const RATE_SK: &str = "RATE";
/// Holder records are deleted by TTL this long after they expire (garbage collection only: an
/// expired holder counts for nothing). Slots and locks have no TTL.
pub(super) const HOLDER_TTL_GRACE_S: u64 = 86_400;

/// The ledger partition of one scope (one Identity Center instance): slots, rate, holders.
pub(super) fn quota_pk(scope: &Scope) -> String {
    format!("QUOTA#{}", scope.key())
}

/// The account locks of one scope: apart, so that `view` never reads them.
pub(super) fn lock_pk(scope: &Scope) -> String {
    format!("QUOTALOCK#{}", scope.key())
}

pub(super) fn slot_sk(slot: u32) -> String {
    format!("SLOT#{slot:04}")
}

pub(super) fn holder_sk(holder: &str) -> String {
    format!("HOLDER#{holder}")
}

/// The slot item a claim writes (the whole item: a request id or attributes of an earlier
/// lease do not survive it).
pub(super) fn claimed_slot(scope: &Scope, c: &ClaimRequest<'_>, fence: u64) -> Item {
    let mut item = key(&quota_pk(scope), &slot_sk(c.slot));
    item.insert("slot".into(), n(u64::from(c.slot)));
    item.insert("fence".into(), n(fence));
    item.insert("holder".into(), s(c.holder));
    item.insert("account".into(), s(c.account.as_str()));
    item.insert("op".into(), s(c.op.as_str()));
    item.insert("sinceUs".into(), n(c.now_us));
    item
}

/// The lock of `account`: it names the lease (slot, fence) whose operation may run there.
pub(super) fn lock_item(scope: &Scope, account: &AccountId, slot: u32, fence: u64) -> Item {
    let mut item = key(&lock_pk(scope), account.as_str());
    item.insert("slot".into(), n(u64::from(slot)));
    item.insert("fence".into(), n(fence));
    item
}

pub(super) fn holder_item(scope: &Scope, h: &HolderRecord) -> Item {
    let mut item = key(&quota_pk(scope), &holder_sk(&h.holder));
    item.insert("holder".into(), s(&h.holder));
    item.insert("waiting".into(), n(u64::from(h.waiting)));
    item.insert("expiresUs".into(), n(h.expires_us));
    item.insert("uncertaintyUs".into(), n(h.uncertainty_us));
    item.insert(TTL_ATTRIBUTE.into(), n(holder_ttl(h.expires_us)));
    item
}

/// TTL (unix seconds) of a holder record expiring at `expires_us`: a day after it, and never
/// before a day from now (a ledger clock far behind must not have it deleted early).
pub(super) fn holder_ttl(expires_us: u64) -> u64 {
    (expires_us / 1_000_000).max(unix_now()) + HOLDER_TTL_GRACE_S
}

pub(super) fn slot_record(item: &Item, pk: &str, sk: &str) -> Result<SlotRecord> {
    let slot = u32::try_from(req_n(item, "slot", pk, sk)?).map_err(|_| malformed(pk, sk, "slot", "is out of range"))?;
    let account = match get_s(item, "account") {
        Some(text) => Some(AccountId::parse(text).map_err(|e| malformed(pk, sk, "account", &e.to_string()))?),
        None => None,
    };
    let operation = match get_s(item, "op") {
        None => None,
        Some(text) => Some(SlotOperation {
            op: [Operation::Assign, Operation::Revoke]
                .into_iter()
                .find(|o| o.as_str() == text)
                .ok_or_else(|| malformed(pk, sk, "op", &format!("is not an operation: `{text}`")))?,
            request_id: get_s(item, "requestId").map(str::to_string),
            since_us: req_n(item, "sinceUs", pk, sk)?,
        }),
    };
    Ok(SlotRecord { slot, fence: req_n(item, "fence", pk, sk)?, holder: get_s(item, "holder").map(str::to_string), account, operation })
}

pub(super) fn holder_record(item: &Item, pk: &str, sk: &str) -> Result<HolderRecord> {
    Ok(HolderRecord {
        holder: req_s(item, "holder", pk, sk)?.to_string(),
        waiting: u32::try_from(req_n(item, "waiting", pk, sk)?).map_err(|_| malformed(pk, sk, "waiting", "is out of range"))?,
        expires_us: req_n(item, "expiresUs", pk, sk)?,
        // Written by every holder of this version; absent (0) in older records.
        uncertainty_us: opt_n(item, "uncertaintyUs", pk, sk)?.unwrap_or(0),
    })
}

/// The (slot, fence) a lock item names.
pub(super) fn lock_names(item: &Item, scope: &Scope, account: &AccountId) -> Result<(u32, u64)> {
    let (pk, sk) = (lock_pk(scope), account.as_str().to_string());
    let slot = u32::try_from(req_n(item, "slot", &pk, &sk)?).map_err(|_| malformed(&pk, &sk, "slot", "is out of range"))?;
    Ok((slot, req_n(item, "fence", &pk, &sk)?))
}

pub(super) fn malformed(pk: &str, sk: &str, attribute: &str, why: &str) -> FanoutError {
    FanoutError::Store(format!("quota ledger item {pk} / {sk}: attribute `{attribute}` {why}"))
}

fn req_s<'a>(item: &'a Item, name: &str, pk: &str, sk: &str) -> Result<&'a str> {
    get_s(item, name).ok_or_else(|| malformed(pk, sk, name, "is missing or not a string"))
}

/// A number attribute that must be there and be a whole number.
pub(super) fn req_n(item: &Item, name: &str, pk: &str, sk: &str) -> Result<u64> {
    opt_n(item, name, pk, sk)?.ok_or_else(|| malformed(pk, sk, name, "is missing"))
}

fn opt_n(item: &Item, name: &str, pk: &str, sk: &str) -> Result<Option<u64>> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(text)) => {
            text.parse().map(Some).map_err(|_| malformed(pk, sk, name, &format!("is not a whole number: `{text}`")))
        }
        Some(_) => Err(malformed(pk, sk, name, "is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            organization_id: "o-abcdef1234".into(),
            management_account_id: "100000000000".into(),
            instance_arn: "arn:aws:sso:::instance/ssoins-1111111111111111".into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn keys_sort_slots_in_order_and_name_the_scope() {
        assert_eq!(slot_sk(7), "SLOT#0007");
        assert!(slot_sk(9) < slot_sk(10));
        assert_eq!(quota_pk(&scope()), "QUOTA#o-abcdef1234#100000000000#ssoins-1111111111111111#us-east-1");
        assert_eq!(lock_pk(&scope()), "QUOTALOCK#o-abcdef1234#100000000000#ssoins-1111111111111111#us-east-1");
    }

    #[test]
    fn a_claimed_slot_reads_back_as_claimed() {
        let account: AccountId = "200000000001".parse().unwrap();
        let c = ClaimRequest { slot: 3, seen_fence: 4, holder: "h1", account: &account, op: Operation::Revoke, now_us: 77 };
        let (pk, sk) = (quota_pk(&scope()), slot_sk(3));
        let mut item = claimed_slot(&scope(), &c, 5);
        let op = SlotOperation { op: Operation::Revoke, request_id: None, since_us: 77 };
        let expected = SlotRecord { slot: 3, fence: 5, holder: Some("h1".into()), account: Some(account.clone()), operation: Some(op.clone()) };
        assert_eq!(slot_record(&item, &pk, &sk).unwrap(), expected);
        item.insert("requestId".into(), s("req-9"));
        let parked = slot_record(&item, &pk, &sk).unwrap();
        assert_eq!(parked.operation, Some(SlotOperation { request_id: Some("req-9".into()), ..op }));
        item.insert("op".into(), s("delete"));
        let e = slot_record(&item, &pk, &sk).unwrap_err();
        assert!(matches!(&e, FanoutError::Store(m) if m.contains("`op`") && m.contains("delete")), "{e}");
    }

    #[test]
    fn malformed_numbers_name_the_item() {
        let mut item = key("QUOTA#x", "SLOT#0001");
        item.insert("slot".into(), n(1));
        item.insert("fence".into(), AttributeValue::N("1.5".into()));
        let e = slot_record(&item, "QUOTA#x", "SLOT#0001").unwrap_err();
        assert!(matches!(&e, FanoutError::Store(m) if m.contains("QUOTA#x / SLOT#0001") && m.contains("fence")), "{e}");
        item.insert("fence".into(), n(3));
        assert_eq!(slot_record(&item, "QUOTA#x", "SLOT#0001").unwrap(), SlotRecord { fence: 3, ..SlotRecord::free(1) });
        // An operation without its time is no operation we can judge: an error, not a free slot.
        item.insert("op".into(), s("assign"));
        assert!(slot_record(&item, "QUOTA#x", "SLOT#0001").is_err());
    }

    #[test]
    fn holders_round_trip_and_older_records_have_no_uncertainty() {
        let h = HolderRecord { holder: "run#b0@1".into(), waiting: 2, expires_us: 5_000_000, uncertainty_us: 25_000 };
        let (pk, sk) = (quota_pk(&scope()), holder_sk(&h.holder));
        let mut item = holder_item(&scope(), &h);
        assert_eq!(holder_record(&item, &pk, &sk).unwrap(), h);
        item.remove("uncertaintyUs");
        assert_eq!(holder_record(&item, &pk, &sk).unwrap().uncertainty_us, 0);
    }

    #[test]
    fn holder_ttl_is_a_day_after_expiry_and_never_in_the_past() {
        let now = unix_now();
        assert_eq!(holder_ttl((now + 100) * 1_000_000), now + 100 + HOLDER_TTL_GRACE_S);
        assert!(holder_ttl(30_000_000) >= now + HOLDER_TTL_GRACE_S);
    }
}
