//! Identifiers as types that cannot hold a malformed value: parsed once, where they enter
//! (the request, an AWS answer), never re-checked, and never swapped for one another (an
//! `AssignmentKey` cannot take a principal id where an account id belongs).

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// Why a text is not a valid identifier of its kind (serde shows it with the field's path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not {}", crate::error::printable(&self.value), self.expected)
    }
}

impl std::error::Error for IdError {}

/// What every identifier type offers, for code that parses ids from AWS answers generically.
pub trait Identifier: Sized {
    fn parse_id(text: &str) -> Result<Self, IdError>;
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $expected:literal, $valid:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const EXPECTED: &'static str = $expected;

            pub fn parse(text: &str) -> Result<$name, IdError> {
                let valid: fn(&str) -> bool = $valid;
                if valid(text) {
                    Ok($name(text.to_string()))
                } else {
                    Err(IdError { value: text.to_string(), expected: $expected })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Identifier for $name {
            fn parse_id(text: &str) -> Result<$name, IdError> {
                $name::parse(text)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<$name, IdError> {
                $name::parse(text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<$name, IdError> {
                $name::parse(&text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A 12-digit AWS account id.
    AccountId,
    "a 12-digit AWS account id",
    |s| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
);

id_type!(
    /// `arn:<partition>:sso:::permissionSet/ssoins-<hex>/ps-<hex>`.
    PermissionSetArn,
    "a permission set ARN of the form arn:aws:sso:::permissionSet/ssoins-<16 characters>/ps-<16 characters>",
    is_permission_set_arn
);

id_type!(
    /// An Identity Store user or group id: a UUID, optionally prefixed by a 10-hex-digit store
    /// prefix and `-`.
    PrincipalId,
    "an Identity Store id (a UUID, optionally prefixed by a 10-hex-digit store prefix and '-')",
    is_identity_store_id
);

id_type!(
    /// An organizational unit id (`ou-ab12-cd34ef56`) or a root id (`r-ab12`).
    OuId,
    "an OU id like ou-ab12-cd34ef56 (or a root id like r-ab12)",
    is_ou_or_root_id
);

impl OuId {
    pub fn is_root(&self) -> bool {
        self.0.starts_with("r-")
    }
}

impl PermissionSetArn {
    /// The instance part (`ssoins-...`) of the ARN.
    pub fn instance_id(&self) -> &str {
        self.0.split('/').nth(1).unwrap_or("")
    }
}

/// The sso-admin model's pattern (botocore `PermissionSetArn`):
/// `arn:(aws|aws-us-gov|aws-cn|aws-iso|aws-iso-b):sso:::permissionSet/(sso)?ins-[a-zA-Z0-9-.]{16}/ps-[a-zA-Z0-9-./]{16}`.
/// moto 5.2.5 names the resource `instance/...` instead of `permissionSet/...`; that form is
/// accepted too, so ARNs from the emulator parse (AWS itself never answers with it, and an ARN
/// that does not exist is refused by the planner's look-up).
fn is_permission_set_arn(s: &str) -> bool {
    const PARTITIONS: [&str; 5] = ["aws", "aws-us-gov", "aws-cn", "aws-iso", "aws-iso-b"];
    let Some(rest) = s.strip_prefix("arn:") else { return false };
    let Some((partition, rest)) = rest.split_once(':') else { return false };
    let Some(resource) = rest.strip_prefix("sso:::") else { return false };
    let Some(resource) = resource.strip_prefix("permissionSet/").or_else(|| resource.strip_prefix("instance/")) else {
        return false;
    };
    let Some((instance, ps)) = resource.split_once('/') else { return false };
    let instance = instance.strip_prefix("ssoins-").or_else(|| instance.strip_prefix("ins-"));
    let id_chars = |t: &str, extra: &[u8]| t.len() == 16 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b) || extra.contains(&b));
    PARTITIONS.contains(&partition)
        && instance.is_some_and(|i| id_chars(i, b""))
        && ps.strip_prefix("ps-").is_some_and(|p| id_chars(p, b"/"))
}

fn is_identity_store_id(s: &str) -> bool {
    let uuid = match s.len() {
        36 => s,
        47 if s.as_bytes()[10] == b'-' && s[..10].bytes().all(|b| b.is_ascii_hexdigit()) => &s[11..],
        _ => return false,
    };
    uuid.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

fn is_ou_or_root_id(s: &str) -> bool {
    let lower_alnum = |t: &str| t.bytes().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
    if let Some(rest) = s.strip_prefix("ou-") {
        let mut it = rest.splitn(2, '-');
        let (Some(a), Some(b)) = (it.next(), it.next()) else { return false };
        (4..=32).contains(&a.len()) && (8..=32).contains(&b.len()) && lower_alnum(a) && lower_alnum(b)
    } else if let Some(rest) = s.strip_prefix("r-") {
        (4..=32).contains(&rest.len()) && lower_alnum(rest)
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_arns_and_ids() {
        assert!(PermissionSetArn::parse("arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123456789abcdef").is_ok());
        assert!(PermissionSetArn::parse("arn:aws:sso:::instance/ssoins-1234567890abcdef").is_err());
        assert!(PermissionSetArn::parse("arn:aws-cn:sso:::permissionSet/ins-0teivxfbitwhyuj9/ps-4vpmfwncmkt4js3v").is_ok());
        assert!(PermissionSetArn::parse("arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123").is_err(), "16 characters");
        assert!(PermissionSetArn::parse("arn:nope:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123456789abcdef").is_err());
        assert!(PrincipalId::parse("906771c1-0071-7057-3a0c-1d1c4ba2c2e8").is_ok());
        assert!(PrincipalId::parse("9067729b3d-94f1e788-9f0d-4a6f-a4d4-0fc2b1b0a6e3").is_ok());
        assert!(PrincipalId::parse("not-a-uuid").is_err());
        assert!(OuId::parse("ou-ab12-cd34ef56").is_ok());
        assert!(OuId::parse("ou-AB12-cd34ef56").is_err());
        assert!(OuId::parse("r-ab12").unwrap().is_root());
        assert!(AccountId::parse("12345678901").is_err());
        assert_eq!(AccountId::parse("123456789012").unwrap(), "123456789012");
    }

    #[test]
    fn ids_deserialize_only_when_valid_and_serialize_as_plain_strings() {
        let id: AccountId = serde_json::from_str("\"123456789012\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"123456789012\"");
        let e = serde_json::from_str::<AccountId>("\"12\"").unwrap_err();
        assert!(e.to_string().contains("12-digit"), "{e}");
    }
}
