//! `Tenant`: whose data a store call reads or writes. Every store method
//! takes one, and every adapter makes it part of its keys and queries, so
//! isolation holds where the data lives rather than in a handler's filter.

use std::fmt;
use std::sync::Arc;

/// The tenant of a deployment without credentials, and the owner of data
/// written before tenants existed.
pub const DEFAULT_TENANT: &str = "default";

/// The longest tenant id: it becomes part of file names, S3 keys and
/// DynamoDB keys, so it stays short and plain.
pub const MAX_TENANT_CHARS: usize = 64;

/// A validated tenant id: 1 to 64 ASCII letters, digits, `-`, `_` or `.`,
/// starting with a letter or digit. That keeps it safe in a path segment,
/// an S3 key, a DynamoDB key (`#` is the key separator) and an S3 Vectors
/// filter, and leaves `*` free to mean "every tenant" for an operator.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant id {0:?} is not valid: use 1 to {MAX_TENANT_CHARS} letters, digits, '-', '_' or '.', starting with a letter or digit"
)]
pub struct InvalidTenant(pub String);

impl Tenant {
    pub fn new(id: &str) -> Result<Self, InvalidTenant> {
        let mut chars = id.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !first_ok || !rest_ok || id.len() > MAX_TENANT_CHARS {
            return Err(InvalidTenant(id.chars().take(80).collect()));
        }
        Ok(Self(Arc::from(id)))
    }

    /// The tenant `default`.
    pub fn default_tenant() -> Self {
        Self(Arc::from(DEFAULT_TENANT))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        &*self.0 == DEFAULT_TENANT
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tenant({})", self.0)
    }
}

/// A tenant travels as its id, and is validated again when read back
/// (from a queue message, say), so a forged message cannot name a tenant
/// the stores would refuse.
impl serde::Serialize for Tenant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Tenant {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        Tenant::new(&id).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Tenant {
    type Err = InvalidTenant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_separators() {
        for ok in ["default", "team-a", "Team_B.prod", "7", &"a".repeat(64)] {
            assert_eq!(Tenant::new(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "*",
            "-a",
            ".a",
            "a/b",
            "a#b",
            "a b",
            "ä",
            "..",
            &"a".repeat(65),
        ] {
            assert!(Tenant::new(bad).is_err(), "{bad:?}");
        }
        assert!(Tenant::default_tenant().is_default());
    }
}
