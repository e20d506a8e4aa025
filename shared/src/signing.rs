//! Standard Webhooks signing (<https://www.standardwebhooks.com>) over
//! `"{id}.{timestamp}.{body}"`:
//! - `v1,` + base64(HMAC-SHA256) with a symmetric secret `whsec_<base64 key>`;
//! - `v1a,` + base64(Ed25519 signature) with a private key `whsk_<base64 of
//!   the 32-byte seed>`; receivers verify with the public key
//!   `whpk_<base64>`, which is not a secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Prefix of an Ed25519 private key.
pub const PRIVATE_KEY_PREFIX: &str = "whsk_";
/// Prefix of an Ed25519 public key.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// Why a secret or a signature could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The secret does not start with `whsec_` followed by base64.
    #[error("secret must be 'whsec_' followed by base64")]
    BadSecret,
    /// No signature in the header matched.
    #[error("no matching signature")]
    NoMatch,
}

/// A fresh secret: `whsec_` + base64 of 24 random bytes.
pub fn generate_secret() -> String {
    format!("{SECRET_PREFIX}{}", B64.encode(rand::random::<[u8; 24]>()))
}

/// A fresh Ed25519 private key: `whsk_` + base64 of a random 32-byte seed.
pub fn generate_private_key() -> String {
    format!(
        "{PRIVATE_KEY_PREFIX}{}",
        B64.encode(rand::random::<[u8; 32]>())
    )
}

fn key_pair(private_key: &str) -> Result<ring::signature::Ed25519KeyPair, SigningError> {
    let seed = private_key
        .strip_prefix(PRIVATE_KEY_PREFIX)
        .and_then(|b| B64.decode(b).ok())
        .ok_or(SigningError::BadSecret)?;
    ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| SigningError::BadSecret)
}

/// The public key (`whpk_...`) of an Ed25519 private key (`whsk_...`).
pub fn public_key(private_key: &str) -> Result<String, SigningError> {
    use ring::signature::KeyPair as _;
    let pair = key_pair(private_key)?;
    Ok(format!(
        "{PUBLIC_KEY_PREFIX}{}",
        B64.encode(pair.public_key().as_ref())
    ))
}

/// Whether `secret` is an Ed25519 private key rather than an HMAC secret.
pub fn is_private_key(secret: &str) -> bool {
    secret.starts_with(PRIVATE_KEY_PREFIX)
}

/// A fresh JWT secret: 32 random bytes, base64url (43 characters).
pub fn generate_jwt_secret() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn key_bytes(secret: &str) -> Result<Vec<u8>, SigningError> {
    let b64 = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SigningError::BadSecret)?;
    B64.decode(b64).map_err(|_| SigningError::BadSecret)
}

/// Whether `secret` is a well-formed `whsec_` secret.
pub fn is_valid_secret(secret: &str) -> bool {
    key_bytes(secret).is_ok_and(|k| !k.is_empty())
}

/// How many key bytes a `whsec_` secret holds; None when malformed.
pub fn key_len(secret: &str) -> Option<usize> {
    key_bytes(secret).ok().map(|k| k.len())
}

/// A body HMAC header value: HMAC-SHA256 of `body` under each secret's
/// text (as shown, `whsec_` included), hex or base64, joined by ", ".
pub fn body_signature(secrets: &[String], body: &[u8], base64: bool) -> String {
    secrets
        .iter()
        .map(|s| {
            let mut m = new_mac(s.as_bytes());
            m.update(body);
            let d = m.finalize().into_bytes();
            if base64 { B64.encode(d) } else { hex(&d) }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// One signature of a message: `v1,<base64>` for an HMAC secret,
/// `v1a,<base64>` for an Ed25519 private key.
pub fn sign(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SigningError> {
    if is_private_key(secret) {
        let pair = key_pair(secret)?;
        let mut msg = Vec::with_capacity(msg_id.len() + body.len() + 24);
        msg.extend_from_slice(msg_id.as_bytes());
        msg.push(b'.');
        msg.extend_from_slice(timestamp.to_string().as_bytes());
        msg.push(b'.');
        msg.extend_from_slice(body);
        return Ok(format!("v1a,{}", B64.encode(pair.sign(&msg).as_ref())));
    }
    let key = key_bytes(secret)?;
    Ok(format!(
        "v1,{}",
        B64.encode(mac(&key, msg_id, timestamp, body))
    ))
}

/// The `webhook-signature` header value: one signature per secret,
/// space-separated, so a receiver holding any of them can verify.
pub fn signature_header(
    secrets: &[String],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SigningError> {
    let sigs: Result<Vec<_>, _> = secrets
        .iter()
        .map(|s| sign(s, msg_id, timestamp, body))
        .collect();
    Ok(sigs?.join(" "))
}

/// Checks a `webhook-signature` header against one secret (`v1`, in
/// constant time per candidate) or one Ed25519 public key `whpk_...`
/// (`v1a`). Timestamp tolerance is the caller's business.
pub fn verify(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> Result<(), SigningError> {
    if let Some(b64) = secret.strip_prefix(PUBLIC_KEY_PREFIX) {
        let pk = B64.decode(b64).map_err(|_| SigningError::BadSecret)?;
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, pk);
        let msg = [
            msg_id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ]
        .concat();
        let ok = header.split(' ').any(|c| {
            c.strip_prefix("v1a,")
                .and_then(|b| B64.decode(b).ok())
                .is_some_and(|sig| key.verify(&msg, &sig).is_ok())
        });
        return if ok {
            Ok(())
        } else {
            Err(SigningError::NoMatch)
        };
    }
    let key = key_bytes(secret)?;
    for candidate in header.split(' ') {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(sig) = B64.decode(b64) else { continue };
        let mut m = new_mac(&key);
        feed(&mut m, msg_id, timestamp, body);
        if m.verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(SigningError::NoMatch)
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

fn feed(m: &mut Hmac<Sha256>, msg_id: &str, timestamp: i64, body: &[u8]) {
    m.update(msg_id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut m = new_mac(key);
    feed(&mut m, msg_id, timestamp, body);
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's test vectors.
    #[test]
    fn spec_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_header_verifies_with_either_secret() {
        let old = generate_secret();
        let new = generate_secret();
        let h = signature_header(&[new.clone(), old.clone()], "m", 5, b"x").unwrap();
        assert!(verify(&old, "m", 5, b"x", &h).is_ok());
        assert!(verify(&new, "m", 5, b"x", &h).is_ok());
        assert_eq!(
            verify(&generate_secret(), "m", 5, b"x", &h),
            Err(SigningError::NoMatch)
        );
        assert_eq!(verify(&new, "m", 6, b"x", &h), Err(SigningError::NoMatch));
    }

    /// RFC 4231 test case 2 ("Jefe"), as hex and as base64.
    #[test]
    fn body_signature_matches_rfc_4231() {
        let secrets = vec!["Jefe".to_string()];
        let body = b"what do ya want for nothing?";
        assert_eq!(
            body_signature(&secrets, body, false),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            body_signature(&secrets, body, true),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
        let two = vec!["Jefe".to_string(), "Jefe".to_string()];
        assert_eq!(body_signature(&two, body, true).split(", ").count(), 2);
    }

    #[test]
    fn ed25519_signatures_verify_with_the_public_key_only() {
        use ring::signature::{ED25519, UnparsedPublicKey};
        let private = generate_private_key();
        let public = public_key(&private).unwrap();
        let sig = sign(&private, "msg_1", 1614265330, b"{}").unwrap();
        let raw = B64.decode(sig.strip_prefix("v1a,").unwrap()).unwrap();
        let pk = B64
            .decode(public.strip_prefix(PUBLIC_KEY_PREFIX).unwrap())
            .unwrap();
        let key = UnparsedPublicKey::new(&ED25519, &pk);
        assert!(key.verify(b"msg_1.1614265330.{}", &raw).is_ok());
        assert!(key.verify(b"msg_1.1614265331.{}", &raw).is_err());
        // RFC 8032 test 1: the seed gives the published public key.
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let seed: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&seed[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let pk = public_key(&format!("whsk_{}", B64.encode(&seed))).unwrap();
        let pk = B64
            .decode(pk.strip_prefix(PUBLIC_KEY_PREFIX).unwrap())
            .unwrap();
        assert_eq!(
            hex(&pk),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert!(public_key("whsk_!!").is_err());
        let header = format!("v1,bogus {sig}");
        assert!(verify(&public, "msg_1", 1614265330, b"{}", &header).is_ok());
        assert_eq!(
            verify(&public, "msg_1", 1614265330, b"{ }", &header),
            Err(SigningError::NoMatch)
        );
    }

    #[test]
    fn bad_secret() {
        assert!(!is_valid_secret("abc"));
        assert!(!is_valid_secret("whsec_!!"));
        assert!(is_valid_secret(&generate_secret()));
    }
}
