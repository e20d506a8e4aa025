//! Content rules an endpoint sets on the events it gets, applied when an
//! event is published: filters on JSON paths of the payload (all must
//! hold), rules scoped by event type (all of some conditions and at least
//! one of others), "trigger only when one of these fields changed", and
//! "deliver only these fields".

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
    #[error("unknown operator {0:?} (eq, ne, in, not_in, gt, gte, lt, lte, contains, exists)")]
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
    /// Equal to none of the values of a JSON array (a missing field is not
    /// in it).
    NotIn,
    /// Greater than (numbers, or strings in byte order).
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
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
            "not_in" => Op::NotIn,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
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
        if matches!(op, Op::In | Op::NotIn) && !value.is_array() {
            return Err(RuleError::BadValue(
                "must be a JSON array for \"in\" and \"not_in\"".into(),
            ));
        }
        Ok(Filter { path, op, value })
    }

    /// Whether `payload` satisfies this filter.
    pub fn holds(&self, payload: &Value) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let got = self.path.get(payload);
        let is_in = |v: &Value| {
            self.value
                .as_array()
                .is_some_and(|a| a.iter().any(|x| json_eq(v, x)))
        };
        let cmp = |v: &Value| compare(v, &self.value);
        match self.op {
            Op::Exists => got.is_some_and(|v| !v.is_null()),
            Op::Eq => got.is_some_and(|v| json_eq(v, &self.value)),
            Op::Ne => !got.is_some_and(|v| json_eq(v, &self.value)),
            Op::In => got.is_some_and(is_in),
            Op::NotIn => !got.is_some_and(is_in),
            Op::Gt => got.is_some_and(|v| cmp(v) == Some(Greater)),
            Op::Gte => got.is_some_and(|v| matches!(cmp(v), Some(Greater | Equal))),
            Op::Lt => got.is_some_and(|v| cmp(v) == Some(Less)),
            Op::Lte => got.is_some_and(|v| matches!(cmp(v), Some(Less | Equal))),
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

/// Conditions that apply to some event types only: every `all_of` holds
/// and, when `any_of` is not empty, at least one of `any_of` does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopedRule {
    /// Event type names or patterns; empty: every type.
    pub event_types: Vec<String>,
    /// All must hold.
    pub all_of: Vec<Filter>,
    /// At least one must hold (when not empty).
    pub any_of: Vec<Filter>,
}

impl ScopedRule {
    /// Whether this rule applies to events of type `event_type`.
    pub fn applies_to(&self, event_type: &str) -> bool {
        self.event_types.is_empty()
            || self
                .event_types
                .iter()
                .any(|p| crate::pattern::matches(p, event_type))
    }

    /// Whether `payload` satisfies this rule.
    pub fn holds(&self, payload: &Value) -> bool {
        self.all_of.iter().all(|f| f.holds(payload))
            && (self.any_of.is_empty() || self.any_of.iter().any(|f| f.holds(payload)))
    }
}

/// An endpoint's rules, parsed once from its record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// All must hold.
    pub filters: Vec<Filter>,
    /// Each one that applies to the event's type must hold.
    pub scoped: Vec<ScopedRule>,
    /// Trigger only when one of these changed.
    pub on_field_change: Vec<Path>,
    /// Deliver only these.
    pub load_only: Vec<Path>,
}

impl Rules {
    /// Parses an endpoint's rules; the error names the offending field
    /// (relative to the endpoint spec: `filters[0].op`).
    pub fn from_record(rec: &crate::model::EndpointRecord) -> Result<Rules, (String, RuleError)> {
        let mut rules = Rules {
            filters: parse_filters("filters", &rec.filters)?,
            ..Rules::default()
        };
        for (i, r) in rec.filter_rules.iter().enumerate() {
            rules.scoped.push(ScopedRule {
                event_types: r.event_types.clone(),
                all_of: parse_filters(&format!("filter_rules[{i}].all_of"), &r.all_of)?,
                any_of: parse_filters(&format!("filter_rules[{i}].any_of"), &r.any_of)?,
            });
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

    /// Whether an event of `event_type` with `payload` (and `change`)
    /// triggers the endpoint.
    pub fn admit(&self, event_type: &str, payload: &Value, change: Change<'_>) -> bool {
        self.filters.iter().all(|f| f.holds(payload))
            && self
                .scoped
                .iter()
                .all(|r| !r.applies_to(event_type) || r.holds(payload))
            && changed(&self.on_field_change, payload, change)
    }
}

/// Parses a list of stored filters; the error names `{list}[i].{part}`.
fn parse_filters(
    list: &str,
    given: &[crate::model::FilterRecord],
) -> Result<Vec<Filter>, (String, RuleError)> {
    given
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Filter::parse(&f.path, &f.op, &f.value_json).map_err(|e| {
                let part = match e {
                    RuleError::BadPath => "path",
                    RuleError::UnknownOp(_) => "op",
                    RuleError::BadValue(_) => "value_json",
                };
                (format!("{list}[{i}].{part}"), e)
            })
        })
        .collect()
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
            (f("amount", "gte", "120"), true),
            (f("amount", "gte", "120.5"), false),
            (f("amount", "lte", "120"), true),
            (f("amount", "lte", "119"), false),
            (f("status", "lte", r#""open""#), true),
            (f("missing", "gte", "0"), false),
            (f("status", "not_in", r#"["lost","won"]"#), true),
            (f("status", "not_in", r#"["open"]"#), false),
            (f("missing", "not_in", r#"["open"]"#), true),
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
        assert!(matches!(
            Filter::parse("a", "not_in", r#""x""#),
            Err(RuleError::BadValue(_))
        ));
    }

    fn record(path: &str, op: &str, v: &str) -> crate::model::FilterRecord {
        crate::model::FilterRecord {
            path: path.into(),
            op: op.into(),
            value_json: v.into(),
        }
    }

    #[test]
    fn rules_scoped_by_event_type() {
        let rec = crate::model::EndpointRecord {
            filter_rules: vec![
                crate::model::FilterRuleRecord {
                    event_types: vec!["Contact.*".into()],
                    all_of: vec![record("country", "eq", r#""FR""#)],
                    any_of: vec![],
                },
                crate::model::FilterRuleRecord {
                    event_types: vec!["Account.*".into()],
                    all_of: vec![],
                    any_of: vec![
                        record("tier", "eq", r#""gold""#),
                        record("revenue", "gte", "1000000"),
                    ],
                },
            ],
            ..Default::default()
        };
        let rules = Rules::from_record(&rec).unwrap();
        let none = Change::default();
        let admit = |t: &str, p: Value| rules.admit(t, &p, none);
        assert!(admit("Contact.created", json!({"country": "FR"})));
        assert!(!admit(
            "Contact.created",
            json!({"country": "DE", "tier": "gold"})
        ));
        assert!(admit("Account.updated", json!({"tier": "gold"})));
        assert!(admit("Account.updated", json!({"revenue": 2000000})));
        assert!(!admit("Account.updated", json!({"country": "FR"})));
        assert!(admit("Lead.created", json!({})), "no rule applies");
    }

    #[test]
    fn bad_rule_conditions_name_their_field() {
        let rec = crate::model::EndpointRecord {
            filter_rules: vec![crate::model::FilterRuleRecord {
                event_types: vec![],
                all_of: vec![record("a", "eq", "1")],
                any_of: vec![record("a", "eq", "1"), record("b", "like", "1")],
            }],
            ..Default::default()
        };
        let (field, _) = Rules::from_record(&rec).unwrap_err();
        assert_eq!(field, "filter_rules[0].any_of[1].op");
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

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn holds(op: &str, value: Value, payload: &Value) -> bool {
            Filter::parse("x", op, &value.to_string())
                .unwrap()
                .holds(payload)
        }

        proptest! {
            #[test]
            fn inclusive_comparisons_are_strict_or_equal(x in -50i64..50, v in -50i64..50) {
                let p = json!({"x": x});
                prop_assert_eq!(holds("gte", json!(v), &p), holds("gt", json!(v), &p) || holds("eq", json!(v), &p));
                prop_assert_eq!(holds("lte", json!(v), &p), holds("lt", json!(v), &p) || holds("eq", json!(v), &p));
                prop_assert_eq!(holds("gte", json!(v), &p), !holds("lt", json!(v), &p));
            }

            #[test]
            fn not_in_is_the_negation_of_in(x in proptest::option::of(0u8..6), set in proptest::collection::vec(0u8..6, 0..4)) {
                let p = match x { Some(x) => json!({"x": x}), None => json!({}) };
                prop_assert_eq!(holds("not_in", json!(set), &p), !holds("in", json!(set), &p));
            }

            /// A rule scoped to other event types never changes what an
            /// endpoint admits, and an unscoped one with only `any_of` is
            /// the disjunction of its conditions.
            #[test]
            fn rules_apply_to_their_event_types_only(x in 0u8..6, a in 0u8..6, b in 0u8..6, other in any::<bool>()) {
                let p = json!({"x": x});
                let cond = |v: u8| Filter::parse("x", "eq", &v.to_string()).unwrap();
                let rule = ScopedRule {
                    event_types: if other { vec!["account.*".into()] } else { vec![] },
                    all_of: vec![],
                    any_of: vec![cond(a), cond(b)],
                };
                let rules = Rules { scoped: vec![rule], ..Rules::default() };
                let got = rules.admit("contact.created", &p, Change::default());
                let want = other || x == a || x == b;
                prop_assert_eq!(got, want);
            }
        }
    }
}
