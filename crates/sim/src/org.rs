//! Generates a plausible organization: nested OUs, env/team tags, a few SUSPENDED accounts, the
//! management account, Identity Store principals and permission sets.

use sso_fanout_core::ids::Identifier;
use sso_fanout_core::model::{Account, AccountStatus, OrgSnapshot, OrgUnit, PermissionSet, Principal, PrincipalType};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::collections::BTreeMap;

pub const ROOT_ID: &str = "r-sim0";
pub const MANAGEMENT_ACCOUNT_ID: &str = "100000000000";
pub const INSTANCE_ARN: &str = "arn:aws:sso:::instance/ssoins-7223000000000001";
pub const IDENTITY_STORE_ID: &str = "d-9067000001";

/// (OU id, parent OU id or root, name): Prod and Dev have nested team OUs.
pub const OUS: &[(&str, &str, &str)] = &[
    ("ou-sim0-prod0000", ROOT_ID, "Prod"),
    ("ou-sim0-prodpaym", "ou-sim0-prod0000", "Payments"),
    ("ou-sim0-prodsrch", "ou-sim0-prod0000", "Search"),
    ("ou-sim0-dev00000", ROOT_ID, "Dev"),
    ("ou-sim0-devplatf", "ou-sim0-dev00000", "Platform"),
    ("ou-sim0-sandbox0", ROOT_ID, "Sandbox"),
    ("ou-sim0-shared00", ROOT_ID, "Shared"),
];

/// Groups, then users, in `principals()`'s order. The first three groups and the users are the
/// original ones (tests and benches rely on their names, ids and order); later ones are appended.
pub const GROUPS: &[&str] = &[
    "PlatformAdmins",
    "Developers",
    "Auditors",
    "SecurityTeam",
    "NetworkTeam",
    "DataEngineers",
    "Support",
    "FinOps",
    "OnCall",
    "Contractors",
];
pub const USERS: &[&str] = &["alice", "bob"];
/// The first three are the original ones (same names, ARNs and order); later ones are appended.
pub const PERMISSION_SETS: &[&str] = &[
    "AdministratorAccess",
    "ReadOnlyAccess",
    "PowerUserAccess",
    "BillingAccess",
    "SecurityAudit",
    "NetworkAdmin",
    "DatabaseAdmin",
    "SupportUser",
];

/// The largest organization the simulator is meant for: Identity Center manages 7,000 accounts
/// per instance by default (adjustable), and the bench measures up to 20,000. Past it a run
/// plans for hours on the real clock and memory grows without a purpose.
pub const MAX_ACCOUNTS: usize = 20_000;

/// Organizations calls a full read of an organization of `accounts` member accounts makes:
/// DescribeOrganization + ListRoots, the OU walk, account pages of `page_size`, tags per account.
pub fn read_calls(accounts: usize, page_size: usize) -> u64 {
    2 + 2 * OUS.len() as u64 + accounts.div_ceil(page_size.max(1)) as u64 + accounts as u64
}

#[derive(Debug, Clone)]
pub struct OrgSpec {
    /// Member accounts (the management account comes on top).
    pub accounts: usize,
    pub seed: u64,
    pub suspended_fraction: f64,
}

/// OU path (root child first) for an OU id.
pub fn ou_path(ou: &str) -> Vec<String> {
    let mut path = vec![];
    let mut cur = ou;
    while let Some((id, parent, _)) = OUS.iter().find(|(id, _, _)| *id == cur) {
        path.push(id.to_string());
        cur = parent;
    }
    path.reverse();
    path
}

/// An id the simulator makes up itself (always well-formed: a test fails loudly if not).
fn generated<T: Identifier>(text: &str) -> T {
    T::parse_id(text).unwrap_or_else(|e| panic!("the simulator generated an invalid id: {e}"))
}

pub fn generate(spec: &OrgSpec) -> OrgSnapshot {
    let mut rng = SmallRng::seed_from_u64(spec.seed ^ 0x6f72_6700);
    let mut accounts = vec![Account {
        id: generated(MANAGEMENT_ACCOUNT_ID),
        name: "management".into(),
        email: "aws-management@example.com".into(),
        status: AccountStatus::Active,
        ou_path: vec![],
        tags: BTreeMap::new(),
    }];
    for i in 0..spec.accounts {
        let n = i + 1;
        // 40% prod, 30% dev, 20% sandbox, 10% shared services.
        let (env, ou, team, name) = match i % 10 {
            0..=3 => {
                let (ou, team) = if i % 2 == 0 { ("ou-sim0-prodpaym", "payments") } else { ("ou-sim0-prodsrch", "search") };
                ("prod", ou, team, format!("prod-{team}-{n:03}"))
            }
            4..=6 => ("dev", "ou-sim0-devplatf", "platform", format!("dev-platform-{n:03}")),
            7..=8 => ("sandbox", "ou-sim0-sandbox0", "platform", format!("user{n:03}-sandbox")),
            _ => ("shared", "ou-sim0-shared00", "platform", format!("shared-services-{n:03}")),
        };
        let status = if rng.random_bool(spec.suspended_fraction.clamp(0.0, 1.0)) { AccountStatus::Suspended } else { AccountStatus::Active };
        let tags = BTreeMap::from([
            ("env".to_string(), env.to_string()),
            ("team".to_string(), team.to_string()),
            ("cost-center".to_string(), format!("cc-{}", 100 + i % 7)),
        ]);
        accounts.push(Account {
            id: generated(&format!("{:012}", 200_000_000_000u64 + n as u64)),
            email: format!("{name}@example.com"),
            name,
            status,
            ou_path: ou_path(ou),
            tags,
        });
    }
    OrgSnapshot {
        organization_id: organization_id(spec),
        management_account_id: generated(MANAGEMENT_ACCOUNT_ID),
        roots: vec![ROOT_ID.into()],
        ous: OUS.iter().map(|(id, parent, name)| OrgUnit { id: id.to_string(), name: name.to_string(), parent_id: parent.to_string() }).collect(),
        accounts,
        fetched_at: 0,
    }
}

/// `o-sim` + 7 hex digits of (size, seed): each simulated organization is an organization of
/// its own, so a cache or latency history kept for one is never used for another.
pub fn organization_id(spec: &OrgSpec) -> String {
    // splitmix64 of (size, seed): every bit of both reaches the 28 bits kept (seeds 1-7 of one
    // size once all gave the same id).
    let mut z = (spec.accounts as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ spec.seed.wrapping_add(0x632b_e59b_d9b4_e019);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("o-sim{:07x}", z & 0x0fff_ffff)
}

/// Permission sets and groups of the simulator's original small directory (what `--sim N`
/// serves unless `SimConfig::extended_directory`): the first entries of the lists above.
pub const ORIGINAL_PERMISSION_SETS: usize = 3;
pub const ORIGINAL_GROUPS: usize = 3;

/// The directory a simulated instance serves: the original one, or every permission set and
/// group above (multi-rule documents, the `reconcile` bench).
pub fn directory(extended: bool) -> (Vec<PermissionSet>, Vec<Principal>) {
    let mut sets = permission_sets();
    let mut principals = principals();
    if !extended {
        sets.truncate(ORIGINAL_PERMISSION_SETS);
        let mut groups = 0;
        principals.retain(|p| p.kind == PrincipalType::User || {
            groups += 1;
            groups <= ORIGINAL_GROUPS
        });
    }
    (sets, principals)
}

pub fn permission_sets() -> Vec<PermissionSet> {
    PERMISSION_SETS
        .iter()
        .enumerate()
        .map(|(i, name)| PermissionSet {
            arn: generated(&format!("arn:aws:sso:::permissionSet/ssoins-7223000000000001/ps-{:016x}", 0xa0 + i)),
            name: name.to_string(),
        })
        .collect()
}

pub fn principals() -> Vec<Principal> {
    let uuid = |n: usize| generated(&format!("{:08x}-0000-4000-8000-{:012x}", 0x9067_0000u32 as usize + n, n));
    GROUPS
        .iter()
        .enumerate()
        .map(|(i, g)| Principal { kind: PrincipalType::Group, id: uuid(i + 1), name: Some(g.to_string()) })
        .chain(USERS.iter().enumerate().map(|(i, u)| Principal { kind: PrincipalType::User, id: uuid(100 + i), name: Some(u.to_string()) }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Names, ids and order of the original permission sets and principals never change (tests
    /// and benches rely on them); added ones come after them, every id unique.
    #[test]
    fn the_original_names_and_ids_stay_and_added_ones_come_after() {
        let sets = permission_sets();
        let original_sets: Vec<(&str, &str)> = sets.iter().take(3).map(|p| (p.name.as_str(), p.arn.as_str())).collect();
        assert_eq!(
            original_sets,
            vec![
                ("AdministratorAccess", "arn:aws:sso:::permissionSet/ssoins-7223000000000001/ps-00000000000000a0"),
                ("ReadOnlyAccess", "arn:aws:sso:::permissionSet/ssoins-7223000000000001/ps-00000000000000a1"),
                ("PowerUserAccess", "arn:aws:sso:::permissionSet/ssoins-7223000000000001/ps-00000000000000a2"),
            ]
        );
        assert_eq!(sets.len(), 8);
        let principals = principals();
        let named = |name: &str| principals.iter().find(|p| p.name.as_deref() == Some(name)).unwrap();
        assert_eq!(principals[0].name.as_deref(), Some("PlatformAdmins"));
        for (name, kind, id) in [
            ("PlatformAdmins", PrincipalType::Group, "90670001-0000-4000-8000-000000000001"),
            ("Developers", PrincipalType::Group, "90670002-0000-4000-8000-000000000002"),
            ("Auditors", PrincipalType::Group, "90670003-0000-4000-8000-000000000003"),
            ("alice", PrincipalType::User, "90670064-0000-4000-8000-000000000064"),
            ("bob", PrincipalType::User, "90670065-0000-4000-8000-000000000065"),
        ] {
            assert_eq!((named(name).kind, named(name).id.as_str()), (kind, id), "{name}");
        }
        let groups: Vec<&str> = principals.iter().filter(|p| p.kind == PrincipalType::Group).filter_map(|p| p.name.as_deref()).collect();
        assert_eq!(groups.len(), 10);
        assert_eq!(groups[..3], ["PlatformAdmins", "Developers", "Auditors"]);
        assert_eq!(sets.iter().map(|p| p.arn.clone()).collect::<BTreeSet<_>>().len(), sets.len());
        assert_eq!(sets.iter().map(|p| p.name.clone()).collect::<BTreeSet<_>>().len(), sets.len());
        assert_eq!(principals.iter().map(|p| p.id.clone()).collect::<BTreeSet<_>>().len(), principals.len());
    }
}
