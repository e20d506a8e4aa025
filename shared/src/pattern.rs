//! Subscription patterns: an endpoint subscribes to event type names or to
//! patterns in which `*` stands for any run of characters (`invoice.*`, `*`).

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is empty.
    #[error("must not be empty")]
    Empty,
    /// The pattern is longer than a name may be.
    #[error("must be at most {} characters", crate::ids::MAX_NAME_LEN)]
    TooLong,
    /// The pattern holds a character that no event type name can have.
    #[error("may only contain letters, digits, '_', '-', '.' and '*' (found {0:?})")]
    BadChar(char),
}

/// Checks a pattern; see the module doc.
pub fn validate(pattern: &str) -> Result<(), PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    if pattern.len() > crate::ids::MAX_NAME_LEN {
        return Err(PatternError::TooLong);
    }
    match pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*')))
    {
        Some(c) => Err(PatternError::BadChar(c)),
        None => Ok(()),
    }
}

/// True when the pattern holds a wildcard.
pub fn is_wildcard(pattern: &str) -> bool {
    pattern.contains('*')
}

/// Whether `name` matches `pattern` (`*` matches any run, even empty).
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no '*' at all: exact match
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let cases = [
            ("*", "invoice.activated", true),
            ("invoice.*", "invoice.activated", true),
            ("invoice.*", "invoice", false),
            ("invoice.*", "invoices.x", false),
            ("Account.*", "Account.Create", true),
            ("invoice.activated", "invoice.activated", true),
            ("invoice.activated", "invoice.activated2", false),
            ("*.created", "user.created", true),
            ("*.created", "user.created.x", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(matches(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn validation() {
        assert!(validate("invoice.*").is_ok());
        assert_eq!(validate(""), Err(PatternError::Empty));
        assert_eq!(validate("a b"), Err(PatternError::BadChar(' ')));
    }
}
