//! `Principal`: who a request acts for — a tenant, a role within it, and
//! the key id or token subject that proved it. The API resolves one per
//! request; core passes its tenant to every store call.

use serde::{Deserialize, Serialize};

use crate::tenant::Tenant;

/// What a principal may do within its tenant. Each role includes the ones
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Query, chat, list and read documents, its own conversations.
    Reader,
    /// And ingest, upload and delete documents.
    Writer,
    /// And manage the tenant's keys and read its usage.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// Whose data a principal reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One tenant's.
    Tenant(Tenant),
    /// A platform operator (a key of tenant `*`): manages every tenant's
    /// keys and usage, and reads a tenant's data only when the request
    /// names it (`x-tenant-id`).
    Operator { acting_for: Option<Tenant> },
}

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub scope: Scope,
    pub role: Role,
    /// The key id or token subject, for logs and usage; never a secret.
    pub id: String,
    /// The use case its token names (`JWT_USE_CASE_CLAIM`), if any.
    pub use_case: Option<String>,
}

impl Principal {
    /// The principal of a deployment that asks for no credential
    /// (`RAG_AGENT_AUTH=none`, loopback only): the default tenant's admin.
    pub fn unauthenticated() -> Self {
        Self {
            scope: Scope::Tenant(Tenant::default_tenant()),
            role: Role::Admin,
            id: "anonymous".to_string(),
            use_case: None,
        }
    }

    /// The tenant whose data this request reads and writes, if any.
    pub fn tenant(&self) -> Option<&Tenant> {
        match &self.scope {
            Scope::Tenant(tenant) => Some(tenant),
            Scope::Operator { acting_for } => acting_for.as_ref(),
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self.scope, Scope::Operator { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_before_them() {
        assert!(Role::Admin.allows(Role::Writer) && Role::Writer.allows(Role::Reader));
        assert!(!Role::Reader.allows(Role::Writer) && !Role::Writer.allows(Role::Admin));
        for role in [Role::Reader, Role::Writer, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }
}
