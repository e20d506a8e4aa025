//! An API key as stored in etcd at `access/keys/{id}`: JSON, versioned,
//! with the secret's hash and never the secret.

use serde::{Deserialize, Serialize};

use super::Scope;

/// The encoding's version, bumped on any change that old readers would
/// misread.
pub const VERSION: u32 = 1;

/// One API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// [`VERSION`] when written.
    pub version: u32,
    /// The key's public id.
    pub id: String,
    /// A name unique among live keys.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The tenants it may act for; empty: every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// When it stops working (ms since the epoch); 0: never.
    #[serde(default)]
    pub expires_at_ms: i64,
    /// When it was made.
    pub created_at_ms: i64,
    /// The key id that made it ("bootstrap" for a key given at start).
    pub created_by: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
}

impl ApiKeyRecord {
    /// Whether it holds a scope that grants `needed`.
    pub fn grants(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|s| s.grants(needed))
    }

    /// Whether it is limited to some tenants.
    pub fn limited(&self) -> bool {
        !self.tenants.is_empty()
    }

    /// Whether it may act for `tenant`.
    pub fn may_act_for(&self, tenant: &str) -> bool {
        !self.limited() || self.tenants.iter().any(|t| t == tenant)
    }
}
