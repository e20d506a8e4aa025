//! Scopes: what a key may do. `admin` grants everything; each `:write`
//! scope grants its `:read`.

use serde::{Deserialize, Serialize};

/// One permission a key can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Everything, including API keys.
    #[serde(rename = "admin")]
    Admin,
    /// Read the catalog, tenants and endpoints.
    #[serde(rename = "config:read")]
    ConfigRead,
    /// Change the catalog, tenants and endpoints; rotate secrets.
    #[serde(rename = "config:write")]
    ConfigWrite,
    /// Publish events.
    #[serde(rename = "publish")]
    Publish,
    /// Read the delivery log and statistics.
    #[serde(rename = "deliveries:read")]
    DeliveriesRead,
    /// Resend, recover, send test events.
    #[serde(rename = "deliveries:write")]
    DeliveriesWrite,
    /// Read the cluster's state.
    #[serde(rename = "cluster:read")]
    ClusterRead,
    /// Drain agents.
    #[serde(rename = "cluster:write")]
    ClusterWrite,
    /// Run as an agent: open the control stream, which carries endpoint
    /// configuration and secrets.
    #[serde(rename = "cluster:agent")]
    ClusterAgent,
    /// Read endpoints' secrets (`GetEndpointSecret`).
    #[serde(rename = "secrets:read")]
    SecretsRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 10] = [
        Scope::Admin,
        Scope::ConfigRead,
        Scope::ConfigWrite,
        Scope::Publish,
        Scope::DeliveriesRead,
        Scope::DeliveriesWrite,
        Scope::ClusterRead,
        Scope::ClusterWrite,
        Scope::ClusterAgent,
        Scope::SecretsRead,
    ];

    /// The scope's name, as written in keys and errors.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::ConfigRead => "config:read",
            Scope::ConfigWrite => "config:write",
            Scope::Publish => "publish",
            Scope::DeliveriesRead => "deliveries:read",
            Scope::DeliveriesWrite => "deliveries:write",
            Scope::ClusterRead => "cluster:read",
            Scope::ClusterWrite => "cluster:write",
            Scope::ClusterAgent => "cluster:agent",
            Scope::SecretsRead => "secrets:read",
        }
    }

    /// The scope named `name`.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether holding `self` allows what `needed` allows.
    pub fn grants(self, needed: Scope) -> bool {
        use Scope::*;
        self == needed
            || self == Admin
            || matches!(
                (self, needed),
                (ConfigWrite, ConfigRead)
                    | (DeliveriesWrite, DeliveriesRead)
                    | (ClusterWrite, ClusterRead)
            )
    }

    /// Whether calls needing it are logged with the key: writes, and
    /// reading secrets.
    pub fn audited(self) -> bool {
        use Scope::*;
        matches!(
            self,
            Admin | ConfigWrite | DeliveriesWrite | ClusterWrite | SecretsRead
        )
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_admin_grants_all() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.name()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.name())
            );
            assert!(Scope::Admin.grants(s));
            assert!(s.grants(s));
        }
        assert!(Scope::ConfigWrite.grants(Scope::ConfigRead));
        assert!(!Scope::ConfigRead.grants(Scope::ConfigWrite));
        assert!(!Scope::Publish.grants(Scope::ConfigRead));
        assert!(!Scope::ClusterWrite.grants(Scope::ClusterAgent));
        // Changing config (even rotating) does not read secrets.
        assert!(!Scope::ConfigWrite.grants(Scope::SecretsRead));
        assert!(!Scope::SecretsRead.grants(Scope::ConfigRead));
        assert_eq!(Scope::parse("Admin"), None);
    }
}
