//! Access control: API keys with scopes, checked in one place.
//!
//! - [`key`]: the key text (`hk_<id>_<secret>`), its hash and the constant-
//!   time comparison;
//! - [`scope`]: what a key may do;
//! - [`record`]: a key as stored in etcd (the hash, never the secret);
//! - [`rules`]: every RPC and the scope and tenant argument it needs;
//! - [`decide`]: the pure decision, key and rule in, allowed or refused out;
//! - [`layer`]: the tower layer in front of every service that applies it.
//!
//! Handlers do not check access; the one exception is `ListTenants`,
//! which lists only the tenants of the caller's key ([`Principal`]).

pub mod decide;
pub mod key;
pub mod layer;
pub mod record;
pub mod rules;
pub mod scope;

pub use decide::{Principal, Refusal};
pub use record::ApiKeyRecord;
pub use scope::Scope;
