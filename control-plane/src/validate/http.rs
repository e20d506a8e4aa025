//! What can go into an HTTP request: header fields (RFC 9110 §5) and
//! endpoint URLs. Whatever passes here an agent can build a request from,
//! and the URL it stores is the one it connects to.

use super::limits::{MAX_HEADER_NAME, MAX_HEADER_VALUE, MAX_URL};
use crate::error::{Error, Result};

/// Headers an endpoint may not set: Herald owns them (signing, auth,
/// tracing, framing, the body's encoding), or they are hop-by-hop (RFC 9110
/// §7.6.1) and mean nothing end to end.
pub const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "traceparent",
    "tracestate",
    "content-type",
    "content-length",
    "content-encoding",
    "host",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "user-agent",
];

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header name an endpoint may set, lowercased: an RFC 9110 token of at
/// most [`MAX_HEADER_NAME`] bytes that Herald does not own.
pub fn header_name(field: &str, name: &str) -> Result<String> {
    if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.bytes().all(is_tchar) {
        return Err(Error::invalid(
            field,
            format!(
                "is not a valid HTTP header name (1..={MAX_HEADER_NAME} letters, digits or !#$%&'*+-.^_`|~)"
            ),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(Error::invalid(
            field,
            "is set by Herald or is hop-by-hop, and cannot be set by an endpoint",
        ));
    }
    Ok(lower)
}

/// An RFC 9110 field value Herald sends as given: visible ASCII, spaces
/// and tabs, no leading or trailing whitespace. (obs-text is refused: a
/// receiver need not accept it.)
pub fn header_value(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_HEADER_VALUE {
        return Err(Error::invalid(
            field,
            format!("value must be at most {MAX_HEADER_VALUE} bytes"),
        ));
    }
    if let Some(b) = value
        .bytes()
        .find(|&b| !(b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b)))
    {
        return Err(Error::invalid(
            field,
            format!("value holds byte 0x{b:02x}; only visible ASCII, space and tab are allowed"),
        ));
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Err(Error::invalid(
            field,
            "value must not start or end with whitespace",
        ));
    }
    Ok(())
}

/// An absolute http(s) URL with a host and no credentials, written so that
/// the URL stored is the URL used: no whitespace, control characters or
/// backslashes (which a URL parser strips or rewrites), an authority after
/// `//`, and no port 0.
pub fn url(field: &str, value: &str, allow_http: bool) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_URL {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_URL} bytes"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '\\')
    {
        return Err(Error::invalid(
            field,
            format!("must not hold {c:?}: percent-encode it"),
        ));
    }
    let u = url::Url::parse(value)
        .map_err(|e| Error::invalid(field, format!("is not a valid URL: {e}")))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(Error::invalid(
                field,
                "must use https (the operator has not allowed http)",
            ));
        }
        s => {
            return Err(Error::invalid(
                field,
                format!("scheme '{s}' is not http or https"),
            ));
        }
    }
    // `http:///x` parses with host "x": insist on the authority as written.
    let after_scheme = &value[u.scheme().len() + 1..];
    if !after_scheme.starts_with("//") || after_scheme[2..].starts_with('/') {
        return Err(Error::invalid(field, "must name a host right after '//'"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(field, "must name a host"));
    }
    if u.port() == Some(0) {
        return Err(Error::invalid(field, "port 0 cannot be connected to"));
    }
    if let Some(name) = u.domain() {
        dns_name(field, name)?;
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(Error::invalid(field, "must not carry credentials"));
    }
    if u.fragment().is_some() {
        return Err(Error::invalid(field, "must not have a fragment"));
    }
    Ok(())
}

/// A host name DNS can resolve (RFC 1035 2.3.4): labels of at most 63
/// bytes, 253 in all; any other name could never be delivered to.
fn dns_name(field: &str, name: &str) -> Result<()> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > 253 {
        return Err(Error::invalid(
            field,
            format!(
                "host name is {} bytes; DNS names have at most 253",
                name.len()
            ),
        ));
    }
    if let Some(label) = name.split('.').find(|l| l.is_empty() || l.len() > 63) {
        return Err(Error::invalid(
            field,
            format!(
                "host name has a label of {} bytes; DNS labels have 1 to 63",
                label.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_follow_rfc_9110_and_refuse_what_herald_owns() {
        assert_eq!(header_name("h", "X-Api-Key").unwrap(), "x-api-key");
        assert!(header_name("h", &"a".repeat(MAX_HEADER_NAME)).is_ok());
        for bad in [
            "",
            "a b",
            "a:b",
            "a\u{1}",
            "é",
            "Keep-Alive",
            "proxy-authorization",
            "Proxy-Authenticate",
            "trailer",
            "TE",
            "webhook-id",
            "Content-Encoding",
        ] {
            assert!(header_name("h", bad).is_err(), "{bad:?}");
        }
        assert!(header_name("h", &"a".repeat(MAX_HEADER_NAME + 1)).is_err());
    }

    #[test]
    fn header_values_are_visible_ascii_space_and_tab() {
        for good in ["", "v", "a b\tc", "Bearer x.y.z", "!~"] {
            assert!(header_value("h", good).is_ok(), "{good:?}");
        }
        assert!(header_value("h", &"v".repeat(MAX_HEADER_VALUE)).is_ok());
        for bad in [
            "a\u{1}", "a\u{1b}b", "a\u{7f}", "a\rb", "a\nb", "a\0", " a", "a\t", "é",
        ] {
            let e = header_value("h", bad).unwrap_err();
            assert!(e.to_string().starts_with("h: "), "{e}");
        }
        assert!(header_value("h", &"v".repeat(MAX_HEADER_VALUE + 1)).is_err());
    }

    #[test]
    fn urls_are_used_as_stored() {
        for good in [
            "https://example.com",
            "https://example.com:8443/a/b?c=d%20e",
            "https://[2001:db8::1]/x",
            "https://xn--bcher-kva.example/",
        ] {
            assert!(url("u", good, false).is_ok(), "{good}");
        }
        assert!(url("u", "http://example.com/", true).is_ok());
        for bad in [
            "",
            "http://example.com/",
            "ftp://example.com/",
            "https://example.com:0/",
            "https:///x",
            "https:/x",
            "https:x",
            " https://example.com/",
            "https://example.com/ ",
            "https://example.com/a\r\nb",
            "https://example.com/a\tb",
            "https://ex ample.com/",
            "https:\\\\example.com/",
            "https://example.com\\@evil.com/",
            "https://user:pw@example.com/",
            "https://example.com/#f",
            "https://a..example.com/",
        ] {
            let e = url("u", bad, false).unwrap_err();
            assert!(e.to_string().starts_with("u: "), "{bad:?}: {e}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL));
        assert!(url("u", &long, false).is_err());
    }

    #[test]
    fn host_names_must_be_resolvable_dns_names() {
        let label = |n: usize| "a".repeat(n);
        let ok = format!("https://{}.example.com/", label(63));
        assert!(url("u", &ok, false).is_ok());
        assert!(url("u", "https://example.com./", false).is_ok());
        let e = url("u", &format!("https://{}.example.com/", label(64)), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "u: host name has a label of 64 bytes; DNS labels have 1 to 63"
        );
        // 4 labels of 63 and the dots: 255 bytes.
        let long = [label(63), label(63), label(63), label(63)].join(".");
        let e = url("u", &format!("https://{long}/"), false).unwrap_err();
        assert!(e.to_string().contains("at most 253"), "{e}");
    }
}
