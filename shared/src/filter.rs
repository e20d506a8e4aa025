//! Content rules an endpoint sets on the events it gets, applied when an
//! event is published: filters on JSON paths of the payload (all must
//! hold), "trigger only when one of these fields changed", and "deliver
//! only these fields".

use serde_json::{Map, Value};

/// A dotted path into a JSON object: `customer.email`, or `$.customer.email`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(Vec<String>);

/// Why a path or a filter was refused; the caller adds the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The path is empty or has an empty segment.
    #[error("is not a path: use dotted field names, like customer.email")]
    BadPath,
    /// The operator is not one Herald knows.
    #[error("unknown operator {0:?} (eq, ne, in, gt, lt, contains, exists)")]
    UnknownOp(String),
    /// The value is not JSON, or not the JSON the operator needs.
    #[error("{0}")]
    BadValue(String),
}

impl Path {
    /// Parses `a.b.c` (an optional `$.` prefix is allowed).
    pub fn parse(s: &str) -> Result<Path, RuleError> {
        let s = s.strip_prefix("$.").unwrap_or(s);
        if s.is_empty() || s.len() > 256 {
            return Err(RuleError::BadPath);
        }
        let parts: Vec<String> = s.split('.').map(str::to_string).collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p.chars().any(|c| c.is_whitespace() || "[]$*".contains(c)))
        {
            return Err(RuleError::BadPath);
        }
        Ok(Path(parts))
    }

    /// The value at this path, if any.
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(v, |v, k| v.as_object()?.get(k))
    }
}

/// How a filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal (JSON equality; numbers by value).
    Eq,
    /// Not equal (a missing field is not equal).
    Ne,
    /// Equal to one of the values of a JSON array.
    In,
    /// Greater than (numbers, or strings in byte order).
    Gt,
    /// Less than.
    Lt,
    /// A string containing the value, or an array holding it.
    Contains,
    /// Present and not null.
    Exists,
}

impl Op {
    /// From its lowercase name.
    pub fn parse(s: &str) -> Result<Op, RuleError> {
        Ok(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "in" => Op::In,
            "gt" => Op::Gt,
            "lt" => Op::Lt,
            "contains" => Op::Contains,
            "exists" => Op::Exists,
            other => return Err(RuleError::UnknownOp(other.to_string())),
        })
    }
}

/// One condition on the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Where to look.
    pub path: Path,
    /// How to compare.
    pub op: Op,
    /// What to compare with (unused by `exists`).
    pub value: Value,
}

impl Filter {
    /// Builds a filter from its stored form; `value_json` may be empty for `exists`.
    pub fn parse(path: &str, op: &str, value_json: &str) -> Result<Filter, RuleError> {
        let path = Path::parse(path)?;
        let op = Op::parse(op)?;
        let value = if value_json.is_empty() {
            if op != Op::Exists {
                return Err(RuleError::BadValue("is required by this operator".into()));
            }
            Value::Null
        } else {
            serde_json::from_str(value_json)
                .map_err(|e| RuleError::BadValue(format!("is not JSON: {e}")))?
        };
        if op == Op::In && !value.is_array() {
            return Err(RuleError::BadValue(
                "must be a JSON array for \"in\"".into(),
            ));
        }
        Ok(Filter { path, op, value })
    }

    /// Whether `payload` satisfies this filter.
    pub fn holds(&self, payload: &Value) -> bool {
        let got = self.path.get(payload);
        match self.op {
            Op::Exists => got.is_some_and(|v| !v.is_null()),
            Op::Eq => got.is_some_and(|v| json_eq(v, &self.value)),
            Op::Ne => !got.is_some_and(|v| json_eq(v, &self.value)),
            Op::In => got.is_some_and(|v| {
                self.value
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| json_eq(v, x)))
            }),
            Op::Gt => {
                got.is_some_and(|v| compare(v, &self.value) == Some(std::cmp::Ordering::Greater))
            }
            Op::Lt => {
                got.is_some_and(|v| compare(v, &self.value) == Some(std::cmp::Ordering::Less))
            }
            Op::Contains => got.is_some_and(|v| match (v, &self.value) {
                (Value::String(s), Value::String(needle)) => s.contains(needle.as_str()),
                (Value::Array(a), x) => a.iter().any(|e| json_eq(e, x)),
                _ => false,
            }),
        }
    }
}

/// JSON equality, with numbers compared by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// An endpoint's rules, parsed once from its record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// All must hold.
    pub filters: Vec<Filter>,
    /// Trigger only when one of these changed.
    pub on_field_change: Vec<Path>,
    /// Deliver only these.
    pub load_only: Vec<Path>,
}

impl Rules {
    /// Parses an endpoint's rules; the error names the offending field
    /// (relative to the endpoint spec: `filters[0].op`).
    pub fn from_record(rec: &crate::model::EndpointRecord) -> Result<Rules, (String, RuleError)> {
        let mut rules = Rules::default();
        for (i, f) in rec.filters.iter().enumerate() {
            let filter = Filter::parse(&f.path, &f.op, &f.value_json).map_err(|e| {
                let field = match e {
                    RuleError::BadPath => "path",
                    RuleError::UnknownOp(_) => "op",
                    RuleError::BadValue(_) => "value_json",
                };
                (format!("filters[{i}].{field}"), e)
            })?;
            rules.filters.push(filter);
        }
        for (i, p) in rec.on_field_change.iter().enumerate() {
            rules
                .on_field_change
                .push(Path::parse(p).map_err(|e| (format!("on_field_change[{i}]"), e))?);
        }
        for (i, p) in rec.load_only.iter().enumerate() {
            rules
                .load_only
                .push(Path::parse(p).map_err(|e| (format!("load_only[{i}]"), e))?);
        }
        Ok(rules)
    }

    /// Whether an event with `payload` (and `change`) triggers the endpoint.
    pub fn admit(&self, payload: &Value, change: Change<'_>) -> bool {
        self.filters.iter().all(|f| f.holds(payload))
            && changed(&self.on_field_change, payload, change)
    }
}

/// What the publisher says changed, for `on_field_change`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Change<'a> {
    /// The previous payload, if sent.
    pub previous: Option<&'a Value>,
    /// Names (paths) of the fields that changed, if sent.
    pub changed_fields: &'a [String],
}

/// Whether one of `fields` changed. A publisher that says nothing about
/// what changed (neither previous values nor names) triggers the endpoint:
/// Herald cannot tell, and dropping an event is worse than sending one.
pub fn changed(fields: &[Path], payload: &Value, change: Change<'_>) -> bool {
    if fields.is_empty() {
        return true;
    }
    let named: Vec<Path> = change
        .changed_fields
        .iter()
        .filter_map(|n| Path::parse(n).ok())
        .collect();
    if change.previous.is_none() && named.is_empty() {
        return true;
    }
    fields.iter().any(|f| {
        named
            .iter()
            .any(|n| n == f || n.0.starts_with(&f.0) || f.0.starts_with(&n.0))
            || change
                .previous
                .is_some_and(|prev| f.get(prev) != f.get(payload))
    })
}

/// The payload with only the fields at `paths` (their nesting kept). An
/// empty list keeps everything.
pub fn project(payload: &Value, paths: &[Path]) -> Value {
    if paths.is_empty() {
        return payload.clone();
    }
    let mut out = Value::Object(Map::new());
    for p in paths {
        let Some(v) = p.get(payload) else { continue };
        let mut at = &mut out;
        for (i, k) in p.0.iter().enumerate() {
            let obj = match at {
                Value::Object(m) => m,
                _ => break,
            };
            if i + 1 == p.0.len() {
                obj.insert(k.clone(), v.clone());
                break;
            }
            at = obj
                .entry(k.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(path: &str, op: &str, v: &str) -> Filter {
        Filter::parse(path, op, v).unwrap()
    }

    #[test]
    fn operators() {
        let p = json!({"status": "open", "amount": 120, "tags": ["vip", "eu"],
                       "customer": {"email": "a@example.com", "vip": null}});
        let table = [
            (f("status", "eq", r#""open""#), true),
            (f("status", "eq", r#""closed""#), false),
            (f("amount", "eq", "120.0"), true),
            (f("status", "ne", r#""closed""#), true),
            (f("missing", "ne", "1"), true),
            (f("status", "in", r#"["open","won"]"#), true),
            (f("status", "in", r#"["lost"]"#), false),
            (f("amount", "gt", "100"), true),
            (f("amount", "lt", "100"), false),
            (f("status", "gt", r#""a""#), true),
            (f("customer.email", "contains", r#""@example.""#), true),
            (f("tags", "contains", r#""vip""#), true),
            (f("tags", "contains", r#""us""#), false),
            (f("$.customer.email", "exists", ""), true),
            (f("customer.vip", "exists", ""), false),
            (f("customer.phone", "exists", ""), false),
            (f("amount", "gt", r#""100""#), false),
        ];
        for (filter, want) in table {
            assert_eq!(filter.holds(&p), want, "{filter:?}");
        }
    }

    #[test]
    fn bad_rules_are_refused() {
        assert_eq!(Path::parse(""), Err(RuleError::BadPath));
        assert_eq!(Path::parse("a..b"), Err(RuleError::BadPath));
        assert_eq!(Path::parse("a[0]"), Err(RuleError::BadPath));
        assert!(matches!(
            Filter::parse("a", "like", "1"),
            Err(RuleError::UnknownOp(_))
        ));
        assert!(matches!(
            Filter::parse("a", "eq", ""),
            Err(RuleError::BadValue(_))
        ));
        assert!(matches!(
            Filter::parse("a", "eq", "{"),
            Err(RuleError::BadValue(_))
        ));
        assert!(matches!(
            Filter::parse("a", "in", "1"),
            Err(RuleError::BadValue(_))
        ));
    }

    #[test]
    fn field_changes() {
        let now = json!({"email": "new@x", "name": "A", "address": {"city": "Paris"}});
        let before = json!({"email": "old@x", "name": "A", "address": {"city": "Paris"}});
        let email = [Path::parse("email").unwrap()];
        let name = [Path::parse("name").unwrap()];
        let city = [Path::parse("address.city").unwrap()];
        let by_prev = Change {
            previous: Some(&before),
            changed_fields: &[],
        };
        assert!(changed(&email, &now, by_prev));
        assert!(!changed(&name, &now, by_prev));
        assert!(!changed(&city, &now, by_prev));
        let names = ["address".to_string()];
        let by_name = Change {
            previous: None,
            changed_fields: &names,
        };
        assert!(changed(&city, &now, by_name), "a parent changed");
        assert!(!changed(&email, &now, by_name));
        assert!(changed(&email, &now, Change::default()), "unknown: send");
        assert!(changed(&[], &now, by_name), "no rule: send");
    }

    #[test]
    fn load_only_keeps_the_listed_fields() {
        let p = json!({"id": 1, "secret": "s", "contact": {"first_name": "A", "last_name": "B"}});
        let paths: Vec<Path> = ["id", "contact.first_name", "missing.x"]
            .iter()
            .map(|s| Path::parse(s).unwrap())
            .collect();
        assert_eq!(
            project(&p, &paths),
            json!({"id": 1, "contact": {"first_name": "A"}})
        );
        assert_eq!(project(&p, &[]), p);
    }
}
