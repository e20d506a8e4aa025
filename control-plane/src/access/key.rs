//! API key text: `hk_<id>_<secret>`. The id (16 hex digits) is public: it
//! names the key in lists and logs. The secret (43 base64url characters, 32
//! random bytes) is shown once; etcd holds only its SHA-256. A fast hash is
//! enough: the secret has 256 bits of entropy, so there is nothing for a
//! slow hash to protect against guessing, and it keeps a check to a
//! microsecond.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every key starts with, so scanners and people recognise one.
pub const PREFIX: &str = "hk_";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 43;

/// A new key: its id, its full text (shown once) and the hash to store.
pub struct Generated {
    /// The public id.
    pub id: String,
    /// `hk_<id>_<secret>`.
    pub text: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
}

/// A key's text, as given in a flag or file: never printed by `Debug`.
#[derive(Clone)]
pub struct KeyText(pub String);

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(<redacted>)")
    }
}

impl std::str::FromStr for KeyText {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        parse(s)
            .map(|_| KeyText(s.to_string()))
            .ok_or_else(|| "is not an API key (hk_<16 hex>_<43 base64url>)".to_string())
    }
}

/// A fresh random key.
pub fn generate() -> Generated {
    let id_bytes: [u8; ID_LEN / 2] = rand::random();
    let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret_bytes: [u8; 32] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
    Generated {
        text: format!("{PREFIX}{id}_{secret}"),
        hash: hash(&secret),
        id,
    }
}

/// Splits a key into (id, secret); None when it is not a key's shape.
pub fn parse(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// Hex SHA-256 of a secret, as stored.
pub fn hash(secret: &str) -> String {
    String::from_utf8_lossy(&hex_digest(secret)).into_owned()
}

/// Whether `secret` hashes to `stored`, in time independent of where they
/// differ.
pub fn matches(secret: &str, stored: &str) -> bool {
    hex_digest(secret).ct_eq(stored.as_bytes()).into()
}

/// SHA-256 of `secret` in lowercase hex, without allocating: this runs on
/// every call (`fmt`-based hex was most of a check's cost).
fn hex_digest(secret: &str) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_matches_its_hash_only() {
        let k = generate();
        let (id, secret) = parse(&k.text).expect("parses");
        assert_eq!(id, k.id);
        assert!(matches(secret, &k.hash));
        assert!(!matches(secret, &generate().hash));
        assert!(!k.hash.contains(secret));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let k = generate().text;
        for bad in [
            String::new(),
            "hk_".into(),
            k[..k.len() - 1].to_string(),
            format!("{k}x"),
            k.replacen("hk_", "hx_", 1),
            k.replacen('_', "-", 2),
            format!("Bearer {k}"),
            "hk_0123456789abcdef_".into(),
            format!("hk_0123456789abcdeg_{}", "a".repeat(43)),
            format!("hk_0123456789abcdef_{}", "a".repeat(42) + "!"),
        ] {
            assert!(parse(&bad).is_none(), "{bad:?}");
        }
    }
}
