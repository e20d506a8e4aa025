//! Every RPC the control plane serves, and what a call to it needs: the
//! scope, and where the request names its tenant. ARCHITECTURE.md holds
//! the same table; a test fails when an RPC of the protos has no rule.

use super::Scope;

/// Where a request names the tenant it acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantArg {
    /// Nowhere: it acts on the whole system, so a key limited to tenants
    /// may not make it.
    Global,
    /// Nowhere, and it reads what every tenant shares (the catalog): any
    /// key with the scope may make it.
    Shared,
    /// Field 1 of the request (`tenant_id`, or `id` for tenants). A
    /// foreign tenant answers NOT_FOUND, as if it did not exist.
    First,
    /// Field 1 of the request, for a call that creates the tenant: a
    /// foreign one answers PERMISSION_DENIED.
    Creates,
    /// Field 1 of each event in field 1 (`PublishBatch.events`).
    EachEvent,
    /// Nowhere; the handler lists only the key's tenants (`ListTenants`).
    Listed,
}

/// What a call to one RPC needs.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `/package.Service/Method`.
    pub path: &'static str,
    /// The scope needed.
    pub scope: Scope,
    /// Where the tenant is named.
    pub tenant: TenantArg,
}

const fn rule(path: &'static str, scope: Scope, tenant: TenantArg) -> Rule {
    Rule {
        path,
        scope,
        tenant,
    }
}

use Scope::*;
use TenantArg::*;

/// Every RPC served with a key.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    rule("/herald.v1.CatalogService/CreateEventType",    ConfigWrite,     Global),
    rule("/herald.v1.CatalogService/GetEventType",       ConfigRead,      Shared),
    rule("/herald.v1.CatalogService/ListEventTypes",     ConfigRead,      Shared),
    rule("/herald.v1.CatalogService/UpdateEventType",    ConfigWrite,     Global),
    rule("/herald.v1.CatalogService/ArchiveEventType",   ConfigWrite,     Global),
    rule("/herald.v1.TenantService/CreateTenant",        ConfigWrite,     Creates),
    rule("/herald.v1.TenantService/GetTenant",           ConfigRead,      First),
    rule("/herald.v1.TenantService/ListTenants",         ConfigRead,      Listed),
    rule("/herald.v1.TenantService/DeleteTenant",        ConfigWrite,     First),
    rule("/herald.v1.EndpointService/CreateEndpoint",    ConfigWrite,     First),
    rule("/herald.v1.EndpointService/GetEndpoint",       ConfigRead,      First),
    rule("/herald.v1.EndpointService/ListEndpoints",     ConfigRead,      First),
    rule("/herald.v1.EndpointService/UpdateEndpoint",    ConfigWrite,     First),
    rule("/herald.v1.EndpointService/DeleteEndpoint",    ConfigWrite,     First),
    rule("/herald.v1.EndpointService/RotateSecret",      ConfigWrite,     First),
    rule("/herald.v1.EndpointService/GetEndpointSecret", SecretsRead,     First),
    rule("/herald.v1.PublishService/Publish",            Publish,         First),
    rule("/herald.v1.PublishService/PublishBatch",       Publish,         EachEvent),
    rule("/herald.v1.DeliveryService/ListDeliveries",    DeliveriesRead,  First),
    rule("/herald.v1.DeliveryService/GetDelivery",       DeliveriesRead,  First),
    rule("/herald.v1.DeliveryService/ResendDelivery",    DeliveriesWrite, First),
    rule("/herald.v1.DeliveryService/RecoverDeliveries", DeliveriesWrite, First),
    rule("/herald.v1.DeliveryService/SendTestEvent",     DeliveriesWrite, First),
    rule("/herald.v1.DeliveryService/GetEndpointStats",  DeliveriesRead,  First),
    rule("/herald.v1.ClusterService/GetCluster",         ClusterRead,     Global),
    rule("/herald.v1.ClusterService/DrainAgent",         ClusterWrite,    Global),
    rule("/herald.v1.AccessService/CreateApiKey",        Admin,           Global),
    rule("/herald.v1.AccessService/ListApiKeys",         Admin,           Global),
    rule("/herald.v1.AccessService/RevokeApiKey",        Admin,           Global),
    rule("/herald.v1.AgentControl/Session",              ClusterAgent,    Global),
];

/// Services open without a key: health, so probes work, and reflection
/// (which `--no-reflection` turns off).
pub const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
];

/// Services the control plane does not serve (agents do; mutual TLS
/// guards them, not keys).
pub const AGENT_SERVICES: &[&str] = &["herald.v1.AgentIngest", "herald.v1.AgentQuery"];

/// The rule of the RPC at `path`.
pub fn find(path: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.path == path)
}

/// Whether `path` is open without a key.
pub fn is_open(path: &str) -> bool {
    OPEN_SERVICES.iter().any(|s| path.starts_with(s))
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use prost_types::FileDescriptorSet;

    use super::*;

    fn descriptors() -> FileDescriptorSet {
        FileDescriptorSet::decode(herald_proto::FILE_DESCRIPTOR_SET).expect("descriptor set")
    }

    /// Adding an RPC without a rule fails here; so does a rule for an RPC
    /// that is gone.
    #[test]
    fn every_rpc_has_exactly_one_rule() {
        let mut served = Vec::new();
        for file in descriptors().file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                if AGENT_SERVICES.contains(&name.as_str()) {
                    continue;
                }
                for m in &service.method {
                    served.push(format!("/{name}/{}", m.name()));
                }
            }
        }
        for path in &served {
            let n = RULES.iter().filter(|r| r.path == path).count();
            assert_eq!(n, 1, "{path} has {n} rules in access::rules::RULES");
        }
        for r in RULES {
            assert!(
                served.iter().any(|p| p == r.path),
                "{} is not an RPC",
                r.path
            );
        }
    }

    /// The layer reads the tenant from field 1: check that field 1 is the
    /// tenant in every request it reads it from.
    #[test]
    fn field_one_names_the_tenant() {
        let set = descriptors();
        let message = |full: &str| {
            let name = full.rsplit('.').next().unwrap_or(full);
            set.file
                .iter()
                .flat_map(|f| f.message_type.iter())
                .find(|m| m.name() == name)
                .cloned()
                .unwrap_or_else(|| panic!("message {full}"))
        };
        for file in &set.file {
            for service in &file.service {
                for m in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), m.name());
                    let Some(rule) = find(&path) else { continue };
                    let input = message(m.input_type());
                    let field1 = input.field.iter().find(|f| f.number() == 1);
                    let field1_name = field1.map(|f| f.name().to_string());
                    match rule.tenant {
                        First | Creates => {
                            let want = if service.name() == "TenantService" {
                                "id"
                            } else {
                                "tenant_id"
                            };
                            assert_eq!(field1_name.as_deref(), Some(want), "{path}");
                        }
                        EachEvent => {
                            let f = field1.expect("field 1");
                            let inner = message(f.type_name());
                            let t = inner
                                .field
                                .iter()
                                .find(|f| f.number() == 1)
                                .map(|f| f.name());
                            assert_eq!(t, Some("tenant_id"), "{path}");
                        }
                        Global | Shared | Listed => {
                            assert!(
                                !input.field.iter().any(|f| f.name() == "tenant_id"),
                                "{path} names a tenant but its rule reads none"
                            );
                        }
                    }
                }
            }
        }
    }
}
