//! The etcd store: typed keys under a prefix, and conditional writes.
//!
//! Every write that must not clobber another is an etcd transaction whose
//! compare carries the precondition (absent, or at the revision the caller
//! read), so two replicas racing cannot both win.

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::sealing::{KeyRing, Stored};

/// Handle to the etcd keyspace of one Herald cluster. Cheap to clone.
/// Records pass through [`Stored`] on the way in and out: with a key ring,
/// their secrets are sealed in etcd.
#[derive(Clone)]
pub struct Store {
    client: Client,
    prefix: String,
    ring: Option<std::sync::Arc<KeyRing>>,
}

/// What lives where, relative to the prefix.
pub mod keys {
    /// Event types: `event_types/{name}`.
    pub const EVENT_TYPES: &str = "event_types/";
    /// Tenants: `tenants/{id}`.
    pub const TENANTS: &str = "tenants/";
    /// Endpoints: `endpoints/{tenant}/{id}`.
    pub const ENDPOINTS: &str = "endpoints/";
    /// Live agents, each under its lease: `agents/{id}`.
    pub const AGENTS: &str = herald_shared::model::AGENTS_DIR;
    /// The slot map (one key).
    pub const SLOT_MAP: &str = "slotmap";
    /// The leading replica's id, under its lease (one key).
    pub const LEADER: &str = "leader";
    /// API keys: `access/keys/{id}`.
    pub const API_KEYS: &str = "access/keys/";
}

/// A decoded record with its etcd `mod_revision`.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    /// The record.
    pub value: T,
    /// The key's `mod_revision`.
    pub revision: i64,
}

impl Store {
    /// Wraps a connected client; `prefix` is normalised to end with `/`.
    pub fn new(client: Client, prefix: &str) -> Self {
        let mut prefix = prefix.trim_end_matches('/').to_string();
        prefix.push('/');
        Store {
            client,
            prefix,
            ring: None,
        }
    }

    /// Seals secrets with `ring` from now on (and opens them with it).
    pub fn with_ring(mut self, ring: Option<std::sync::Arc<KeyRing>>) -> Self {
        self.ring = ring;
        self
    }

    /// A record as written to etcd: its secrets sealed when there is a ring.
    pub fn encode<T: Serialize + Stored + Clone>(&self, value: &T) -> Vec<u8> {
        match &self.ring {
            Some(ring) => {
                let mut sealed = value.clone();
                sealed.seal(ring);
                encode(&sealed)
            }
            None => encode(value),
        }
    }

    /// A record read from etcd at `key`, its secrets opened.
    pub fn decode<T: DeserializeOwned + Stored>(&self, key: &str, bytes: &[u8]) -> Result<T> {
        let mut value: T = decode(key, bytes)?;
        value
            .open(self.ring.as_deref())
            .map_err(|e| Error::Corrupt {
                key: key.to_string(),
                reason: e.to_string(),
            })?;
        Ok(value)
    }

    /// The key prefix, ending with `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A clone of the underlying client (for watches and leases).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Full key for a path relative to the prefix.
    pub fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    /// Reads one record.
    pub async fn get<T: DeserializeOwned + Stored>(
        &self,
        rel: &str,
    ) -> Result<Option<Versioned<T>>> {
        let key = self.key(rel);
        let resp = self.client.kv_client().get(key.as_str(), None).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => Ok(Some(Versioned {
                value: self.decode(&key, kv.value())?,
                revision: kv.mod_revision(),
            })),
        }
    }

    /// Rewrites a record kept under a lease (an agent's registration),
    /// keeping the lease; false if it is gone or changed meanwhile.
    pub async fn update_leased<T: Serialize + DeserializeOwned + Stored + Clone>(
        &self,
        rel: &str,
        f: impl FnOnce(&mut T),
    ) -> Result<bool> {
        let key = self.key(rel);
        let resp = self.client.kv_client().get(key.as_str(), None).await?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(false);
        };
        let mut value: T = self.decode(&key, kv.value())?;
        f(&mut value);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([TxnOp::put(
                key.as_str(),
                self.encode(&value),
                Some(etcd_client::PutOptions::new().with_lease(kv.lease())),
            )]);
        Ok(self.client.kv_client().txn(txn).await?.succeeded())
    }

    /// Reads every record under a relative prefix, in key order.
    pub async fn list<T: DeserializeOwned + Stored>(
        &self,
        rel_prefix: &str,
    ) -> Result<Vec<Versioned<T>>> {
        let mut out = Vec::new();
        let mut failed = None;
        self.scan(rel_prefix, |key, value, revision| {
            if failed.is_some() {
                return;
            }
            match self.decode(key, value) {
                Ok(value) => out.push(Versioned { value, revision }),
                Err(e) => failed = Some(e),
            }
        })
        .await?;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Up to `limit` records under a relative prefix whose keys come after
    /// `after` (a key relative to the prefix; empty: from the start), in key
    /// order, and whether more follow.
    pub async fn list_page<T: DeserializeOwned + Stored>(
        &self,
        rel_prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<(String, Versioned<T>)>, bool)> {
        let start = self.key(rel_prefix);
        let end = prefix_end(start.as_bytes());
        let mut from = if after.is_empty() {
            start.clone().into_bytes()
        } else {
            format!("{start}{after}").into_bytes()
        };
        if !after.is_empty() {
            from.push(0); // the first key after it
        }
        let opts = GetOptions::new()
            .with_range(end)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let resp = self
            .client
            .kv_client()
            .max_decoding_message_size(SCAN_MESSAGE)
            .get(from, Some(opts))
            .await?;
        let mut out = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let value = self.decode(&key, kv.value())?;
            let rel = key.strip_prefix(&start).unwrap_or(&key).to_string();
            out.push((
                rel,
                Versioned {
                    value,
                    revision: kv.mod_revision(),
                },
            ));
        }
        Ok((out, resp.more()))
    }

    /// Calls `f(key, value, mod revision)` for every key under a relative
    /// prefix, in key order, reading pages of [`SCAN_PAGE`] keys all at the
    /// revision of the first (one consistent snapshot however many keys:
    /// one read of them all would pass any message limit). Returns that
    /// revision.
    pub async fn scan(&self, rel_prefix: &str, mut f: impl FnMut(&str, &[u8], i64)) -> Result<i64> {
        let mut client = self
            .client
            .kv_client()
            .max_decoding_message_size(SCAN_MESSAGE);
        let start = self.key(rel_prefix);
        let end = prefix_end(start.as_bytes());
        let mut from = start.into_bytes();
        let mut revision = 0;
        let mut page = SCAN_PAGE;
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(page);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = match client.get(from.clone(), Some(opts)).await {
                Ok(resp) => resp,
                // Too large an answer, perhaps: try half as many keys.
                Err(_) if page > 1 => {
                    page /= 2;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            }
            for kv in resp.kvs() {
                f(
                    &String::from_utf8_lossy(kv.key()),
                    kv.value(),
                    kv.mod_revision(),
                );
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0); // the first key after it
                }
                _ => return Ok(revision),
            }
        }
    }

    /// Writes `value` at `rel` only if the key is absent, and, when
    /// `requires` is given, only if that other key exists. Returns the new
    /// revision, or which precondition failed.
    pub async fn create<T: Serialize + Stored + Clone>(
        &self,
        rel: &str,
        value: &T,
        requires: Option<&str>,
    ) -> Result<i64, CreateConflict> {
        let key = self.key(rel);
        let mut cmp = vec![Compare::version(key.as_str(), CompareOp::Equal, 0)];
        if let Some(req) = requires {
            cmp.push(Compare::version(self.key(req), CompareOp::Greater, 0));
        }
        let txn = Txn::new()
            .when(cmp)
            .and_then([TxnOp::put(key.as_str(), self.encode(value), None)])
            .or_else([TxnOp::get(
                key.as_str(),
                Some(GetOptions::new().with_count_only()),
            )]);
        let resp = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(Error::from)?;
        if resp.succeeded() {
            return Ok(header_revision(resp.header()));
        }
        // Which compare failed: the key itself exists, or the required one is missing.
        let exists = resp.op_responses().into_iter().any(|r| match r {
            etcd_client::TxnOpResponse::Get(g) => g.count() > 0,
            _ => false,
        });
        Err(if exists {
            CreateConflict::Exists
        } else {
            CreateConflict::MissingRequired
        })
    }

    /// Replaces the record at `rel` only if its revision is still
    /// `expected`. Returns the new revision; `Ok(None)` when the key is gone
    /// or changed (the caller reads again to say which).
    pub async fn update<T: Serialize + Stored + Clone>(
        &self,
        rel: &str,
        value: &T,
        expected: i64,
    ) -> Result<Option<i64>> {
        let key = self.key(rel);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                expected,
            )])
            .and_then([TxnOp::put(key.as_str(), self.encode(value), None)]);
        let resp = self.client.kv_client().txn(txn).await?;
        Ok(resp.succeeded().then(|| header_revision(resp.header())))
    }

    /// Deletes the key `rel` and every key under the relative prefixes in
    /// `also_prefixes`, atomically, provided `rel` exists. Returns the
    /// revision and how many keys went, or `None` when `rel` was absent.
    pub async fn delete_with(
        &self,
        rel: &str,
        also_prefixes: &[&str],
    ) -> Result<Option<(i64, i64)>> {
        let key = self.key(rel);
        let mut ops = vec![TxnOp::delete(key.as_str(), None)];
        for p in also_prefixes {
            ops.push(TxnOp::delete(
                self.key(p),
                Some(DeleteOptions::new().with_prefix()),
            ));
        }
        let txn = Txn::new()
            .when([Compare::version(key.as_str(), CompareOp::Greater, 0)])
            .and_then(ops);
        let resp = self.client.kv_client().txn(txn).await?;
        if !resp.succeeded() {
            return Ok(None);
        }
        let deleted = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                etcd_client::TxnOpResponse::Delete(d) => d.deleted(),
                _ => 0,
            })
            .sum();
        Ok(Some((header_revision(resp.header()), deleted)))
    }

    /// Writes `value` at `rel` if the key's revision is still `expected`
    /// (0: the key must be absent). Returns whether it was written.
    pub async fn compare_and_put<T: Serialize + Stored + Clone>(
        &self,
        rel: &str,
        value: &T,
        expected: i64,
    ) -> Result<bool> {
        let key = self.key(rel);
        let cmp = if expected == 0 {
            Compare::version(key.as_str(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.as_str(), CompareOp::Equal, expected)
        };
        let txn =
            Txn::new()
                .when([cmp])
                .and_then([TxnOp::put(key.as_str(), self.encode(value), None)]);
        Ok(self.client.kv_client().txn(txn).await?.succeeded())
    }
}

/// Why a conditional create did not write.
#[derive(Debug)]
pub enum CreateConflict {
    /// The key exists already.
    Exists,
    /// The key named by `requires` does not exist.
    MissingRequired,
    /// etcd failed.
    Store(Error),
}

impl From<Error> for CreateConflict {
    fn from(e: Error) -> Self {
        CreateConflict::Store(e)
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map(|h| h.revision()).unwrap_or_default()
}

/// Keys per page of [`Store::scan`]. Each page costs etcd (3.4) a walk of
/// the rest of the range, so fewer, larger pages load a big config much
/// faster: a million endpoints took 204 s in pages of 1,000 (BENCHMARKS.md).
/// Ten thousand ordinary records (an endpoint is usually under 2 KiB) stay
/// well under [`SCAN_MESSAGE`]; a page of unusually large ones that fails is
/// read again in halves.
pub const SCAN_PAGE: i64 = 10_000;
/// Largest answer a scan accepts from etcd.
const SCAN_MESSAGE: usize = 64 << 20;

/// The end of the key range of `prefix`: its last byte below 0xff, plus 1.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

/// Serialises a record; our records are plain data, so this cannot fail.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Decodes a record read from `key`.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}
