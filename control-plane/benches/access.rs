//! What the access decision costs per call: authenticate (parse the
//! bearer header, look the key up, SHA-256 of the secret, constant-time
//! compare, expiry) and authorize (scope, tenant), among 1,000 keys.
//! `cargo bench -p herald-control-plane --bench access`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use herald_control_plane::access::decide::{authenticate, authorize, tenant};
use herald_control_plane::access::rules::find;
use herald_control_plane::access::{ApiKeyRecord, Scope, key};

fn main() {
    let mut keys = HashMap::new();
    let mut header = String::new();
    for i in 0..1000 {
        let k = key::generate();
        if i == 500 {
            header = format!("Bearer {}", k.text);
        }
        let rec = ApiKeyRecord {
            version: 1,
            id: k.id.clone(),
            name: format!("k{i}"),
            scopes: vec![Scope::Publish],
            tenants: vec!["acme".into()],
            expires_at_ms: 0,
            created_at_ms: 0,
            created_by: "bench".into(),
            secret_sha256: k.hash,
        };
        keys.insert(k.id, Arc::new(rec));
    }
    let rule = find("/herald.v1.PublishService/Publish").unwrap();
    let n = 1_000_000;
    for round in 0..3 {
        let started = Instant::now();
        for _ in 0..n {
            let p = authenticate(Some(black_box(&header)), &keys, 1).unwrap();
            let check = authorize(&p.key, rule).unwrap();
            if check {
                tenant(&p.key, rule, black_box("acme")).unwrap();
            }
            black_box(p);
        }
        let ns = started.elapsed().as_nanos() as f64 / n as f64;
        println!("round {round}: {ns:.0} ns per call (authenticate + authorize + tenant)");
    }
}
