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

pub const GROUPS: &[&str] = &["PlatformAdmins", "Developers", "Auditors"];
pub const USERS: &[&str] = &["alice", "bob"];
pub const PERMISSION_SETS: &[&str] = &["AdministratorAccess", "ReadOnlyAccess", "PowerUserAccess"];

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
    let mixed = (spec.accounts as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ spec.seed.rotate_left(29);
    format!("o-sim{:07x}", (mixed ^ (mixed >> 32)) & 0x0fff_ffff)
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
