//! Secrets at rest: endpoint signing secrets (HMAC and Ed25519), JWT
//! secrets and Basic passwords are stored in etcd sealed with
//! ChaCha20-Poly1305 under a key-encryption key from a file
//! (`--secrets-key-file`).
//!
//! A sealed value is `hsec1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`,
//! authenticated with the endpoint's id as associated data, so a value
//! cannot be moved to another endpoint. It names its key, so keys rotate:
//! the file lists the current key first and older ones after it (which
//! only open), and `herald-control-plane --reseal-secrets` rewrites every
//! record under the current key with compare-and-put while the system runs.
//! A value without the prefix is a secret stored in clear (before a key
//! file was given); it is read as is and sealed on the next write.

use std::collections::HashMap;

use base64::Engine as _;
use herald_shared::model::{AuthRecord, EndpointRecord};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The prefix of a sealed value.
pub const PREFIX: &str = "hsec1:";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a key file or a sealed value was refused. The text never holds key
/// material or a secret.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file is malformed.
    #[error("secrets key file, line {line}: {reason}")]
    KeyFile {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A sealed value names a key the ring does not hold.
    #[error("a secret is sealed with key '{0}', which --secrets-key-file does not hold")]
    UnknownKey(String),
    /// A sealed value does not open (damaged, or moved between records).
    #[error("a sealed secret does not open with key '{0}'")]
    Damaged(String),
    /// A sealed value is found but no key file was given.
    #[error("secrets are sealed in etcd but no --secrets-key-file was given")]
    NoKeys,
}

/// The key-encryption keys: the current one seals, every one opens.
pub struct KeyRing {
    current: String,
    keys: HashMap<String, LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyRing(current: {}, {} keys)",
            self.current,
            self.keys.len()
        )
    }
}

impl KeyRing {
    /// Parses a key file: one `<id>:<base64 of 32 bytes>` per line, the
    /// current key first; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<KeyRing, SealError> {
        let mut current = None;
        let mut keys = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason| SealError::KeyFile {
                line: i + 1,
                reason,
            };
            let (id, b64) = line
                .split_once(':')
                .ok_or(bad("expected <id>:<base64 key>"))?;
            if id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad("the id must be 1 to 32 letters, digits, '-' or '_'"));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| bad("the key is not base64"))?;
            let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
                .map_err(|_| bad("the key must be 32 bytes"))?;
            if keys
                .insert(id.to_string(), LessSafeKey::new(unbound))
                .is_some()
            {
                return Err(bad("the id is used twice"));
            }
            current.get_or_insert_with(|| id.to_string());
        }
        let current = current.ok_or(SealError::KeyFile {
            line: 0,
            reason: "the file holds no key",
        })?;
        Ok(KeyRing {
            current,
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// A new key file line with id `id` (for `--new-secrets-key`).
    pub fn new_key_line(id: &str) -> String {
        let mut key = [0u8; 32];
        // The system RNG failing is not something to go on from.
        SystemRandom::new()
            .fill(&mut key)
            .expect("the system random number generator failed");
        format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Seals `plain` for the record `aad`.
    pub fn seal(&self, aad: &str, plain: &str) -> String {
        let key = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the system random number generator failed");
        let mut buf = plain.as_bytes().to_vec();
        // Sealing in place with a fresh nonce cannot fail for our sizes.
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut buf,
        )
        .expect("sealing failed");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{PREFIX}{}:{}", self.current, B64.encode(out))
    }

    /// Opens a value sealed for the record `aad`.
    pub fn open(&self, aad: &str, sealed: &str) -> Result<String, SealError> {
        let rest = sealed.strip_prefix(PREFIX).unwrap_or(sealed);
        let (id, b64) = rest
            .split_once(':')
            .ok_or_else(|| SealError::Damaged(String::new()))?;
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let damaged = || SealError::Damaged(id.to_string());
        let mut bytes = B64.decode(b64).map_err(|_| damaged())?;
        if bytes.len() < NONCE_LEN {
            return Err(damaged());
        }
        let mut body = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| damaged())?;
        let plain = key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut body)
            .map_err(|_| damaged())?;
        String::from_utf8(plain.to_vec()).map_err(|_| damaged())
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// A record as stored in etcd: some fields are sealed on the way in and
/// opened on the way out. Records without secrets keep the defaults.
pub trait Stored {
    /// Seals the secrets in place.
    fn seal(&mut self, _ring: &KeyRing) {}

    /// Opens the secrets in place; `ring` is None without a key file.
    fn open(&mut self, _ring: Option<&KeyRing>) -> Result<(), SealError> {
        Ok(())
    }
}

impl Stored for EndpointRecord {
    fn seal(&mut self, ring: &KeyRing) {
        let aad = self.id.clone();
        for_each_secret(self, |s| {
            if !is_sealed(s) {
                *s = ring.seal(&aad, s);
            }
            Ok(())
        })
        .unwrap_or(());
    }

    fn open(&mut self, ring: Option<&KeyRing>) -> Result<(), SealError> {
        let aad = self.id.clone();
        for_each_secret(self, |s| {
            if is_sealed(s) {
                *s = ring.ok_or(SealError::NoKeys)?.open(&aad, s)?;
            }
            Ok(())
        })
    }
}

/// Applies `f` to every secret of an endpoint record: the signing secrets
/// (HMAC `whsec_` or Ed25519 `whsk_`), those still in their overlap, the
/// JWT secret and the Basic password.
fn for_each_secret(
    rec: &mut EndpointRecord,
    mut f: impl FnMut(&mut String) -> Result<(), SealError>,
) -> Result<(), SealError> {
    for s in &mut rec.signing_secrets {
        f(s)?;
    }
    for p in &mut rec.previous_secrets {
        f(&mut p.secret)?;
    }
    match &mut rec.auth {
        Some(AuthRecord::Basic { password, .. }) => f(password),
        Some(AuthRecord::Jwt { secret, .. }) => f(secret),
        None => Ok(()),
    }
}

macro_rules! no_secrets {
    ($($t:ty),*) => { $(impl Stored for $t {})* };
}
no_secrets!(
    herald_shared::model::EventTypeRecord,
    herald_shared::model::TenantRecord,
    herald_shared::model::AgentRecord,
    herald_shared::model::SlotMap,
    crate::access::ApiKeyRecord,
    String
);

#[cfg(test)]
mod tests {
    use herald_shared::model::ExpiringSecretRecord;

    use super::*;

    fn ring(lines: &[&str]) -> KeyRing {
        KeyRing::parse(&lines.join("\n")).unwrap()
    }

    fn record() -> EndpointRecord {
        EndpointRecord {
            id: "ep_1".into(),
            signing_secrets: vec!["whsec_AAAA".into(), "whsk_BBBB".into()],
            previous_secrets: vec![ExpiringSecretRecord {
                secret: "whsec_CCCC".into(),
                expires_at_ms: 1,
            }],
            auth: Some(AuthRecord::Basic {
                username: "u".into(),
                password: "hunter2-password".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn every_secret_is_sealed_and_opens_back() {
        let k1 = KeyRing::new_key_line("k1");
        let r = ring(&[&k1]);
        let plain = record();
        let mut sealed = plain.clone();
        sealed.seal(&r);
        let text = String::from_utf8(crate::store::encode(&sealed)).unwrap();
        for secret in ["AAAA", "BBBB", "CCCC", "hunter2"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("hsec1:k1:"));
        let mut opened = sealed.clone();
        opened.open(Some(&r)).unwrap();
        assert_eq!(opened, plain);
        // Sealing twice does not seal a sealed value again.
        let mut again = sealed.clone();
        again.seal(&r);
        assert_eq!(again, sealed);
    }

    #[test]
    fn rotation_and_refusals() {
        let (k1, k2) = (KeyRing::new_key_line("k1"), KeyRing::new_key_line("k2"));
        let mut sealed = record();
        sealed.seal(&ring(&[&k1]));
        // The new key first, the old one after: opens, and seals with k2.
        let both = ring(&[&k2, "# old", &k1]);
        let mut rec = sealed.clone();
        rec.open(Some(&both)).unwrap();
        rec.seal(&both);
        assert!(
            rec.signing_secrets
                .iter()
                .all(|s| s.starts_with("hsec1:k2:"))
        );
        assert!(rec.clone().open(Some(&ring(&[&k2]))).is_ok());
        // The old key alone no longer opens what k2 sealed.
        assert!(matches!(
            rec.clone().open(Some(&ring(&[&k1]))),
            Err(SealError::UnknownKey(_))
        ));
        assert!(matches!(rec.clone().open(None), Err(SealError::NoKeys)));
        // Moved to another endpoint, it does not open.
        let mut moved = sealed.clone();
        moved.id = "ep_2".into();
        assert!(matches!(
            moved.open(Some(&ring(&[&k1]))),
            Err(SealError::Damaged(_))
        ));
        // Plain values (stored before a key file) are read as they are.
        let mut legacy = record();
        legacy.open(Some(&ring(&[&k1]))).unwrap();
        assert_eq!(legacy, record());
    }

    #[test]
    fn key_files_are_checked() {
        for bad in [
            "",
            "# only a comment",
            "k1",
            "k1:notbase64!",
            "k1:AAAA",
            "bad id:AAAA",
        ] {
            assert!(KeyRing::parse(bad).is_err(), "{bad:?}");
        }
        let k = KeyRing::new_key_line("k1");
        assert!(
            KeyRing::parse(&format!("{k}\n{k}")).is_err(),
            "a duplicate id"
        );
        let e = KeyRing::parse("k1:AAAA").unwrap_err().to_string();
        assert!(!e.contains("AAAA"), "{e}");
    }
}
