//! Renders a JSON-schema failure in the grammar of APISIX's validator, e.g.
//! `property "upstream" validation failed: property "retries" validation failed: expected -1 to be at least 0`.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::ValidationError;
use serde_json::Value;

/// The APISIX-style message for one validation error against `root` (the schema document).
pub fn render(error: &ValidationError<'_>, root: &Value) -> String {
    let mut out = String::new();
    let mut instance = error.instance_path().iter();
    let mut schema = error.schema_path().iter().peekable();
    while let Some(keyword) = schema.next() {
        let keyword = keyword.to_string();
        match keyword.as_str() {
            "properties" => {
                schema.next();
                if let Some(name) = instance.next() {
                    out.push_str(&format!("property \"{name}\" validation failed: "));
                }
            }
            "patternProperties" => {
                let pattern = schema.next().map(|p| p.to_string()).unwrap_or_default();
                if let Some(name) = instance.next() {
                    out.push_str(&format!(
                        "failed to validate {name} (matching \"{pattern}\"): "
                    ));
                }
            }
            "items" => {
                if matches!(schema.peek(), Some(LocationSegment::Index(_))) {
                    schema.next();
                }
                if let Some(LocationSegment::Index(i)) = instance.next() {
                    out.push_str(&format!("failed to validate item {}: ", i + 1));
                }
            }
            "then" | "else" => {
                out.push_str(&format!("{keyword} clause did not match"));
                return out;
            }
            "dependencies" => {
                if let ValidationErrorKind::Required { property: missing } = error.kind() {
                    let property = dependent_on(root, error, missing);
                    out.push_str(&format!(
                        "property {} is required when {property} is set",
                        quoted(missing)
                    ));
                    return out;
                }
                let property = schema.next().map(|p| p.to_string()).unwrap_or_default();
                out.push_str(&format!(
                    "failed to validate dependent schema for {property}: "
                ));
            }
            _ => {}
        }
    }
    out.push_str(&leaf(error.kind(), error.instance()));
    if matches!(error.kind(), ValidationErrorKind::AnyOf { .. }) {
        out.push_str(&required_alternatives(root, error.schema_path().as_str()));
    }
    out
}

/// The property present in the instance whose `dependencies` list names `missing`.
fn dependent_on(root: &Value, error: &ValidationError<'_>, missing: &Value) -> String {
    let path = error.schema_path().as_str();
    let Some(end) = path.find("/dependencies") else {
        return String::new();
    };
    let lists = root
        .pointer(&path[..end + "/dependencies".len()])
        .and_then(Value::as_object);
    lists
        .into_iter()
        .flatten()
        .find(|(property, needs)| {
            error.instance().get(property.as_str()).is_some()
                && needs.as_array().is_some_and(|n| n.contains(missing))
        })
        .map(|(property, _)| property.clone())
        .unwrap_or_default()
}

/// APISIX's validator ends an `anyOf` failure with the `required` lists of its branches, when
/// they have some: `: ["active"] or ["active","passive"]`.
fn required_alternatives(root: &Value, any_of: &str) -> String {
    let lists: Vec<String> = root
        .pointer(any_of)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|branch| branch.get("required"))
        .map(Value::to_string)
        .collect();
    if lists.is_empty() {
        String::new()
    } else {
        format!(": {}", lists.join(" or "))
    }
}

fn leaf(kind: &ValidationErrorKind, value: &Value) -> String {
    use ValidationErrorKind as K;
    match kind {
        K::Required { property } => {
            format!("property {} is required", quoted(property))
        }
        K::Type {
            kind: TypeKind::Single(t),
        } => format!("wrong type: expected {t}, got {}", lua_type(value)),
        K::Type {
            kind: TypeKind::Multiple(set),
        } => format!(
            "wrong type: expected one of {}, got {}",
            set.iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            lua_type(value)
        ),
        K::Minimum { limit } => format!("expected {value} to be at least {limit}"),
        K::Maximum { limit } => format!("expected {value} to be at most {limit}"),
        K::ExclusiveMinimum { limit } => format!("expected {value} to be greater than {limit}"),
        K::ExclusiveMaximum { limit } => format!("expected {value} to be smaller than {limit}"),
        K::MaxLength { limit } => format!(
            "string too long, expected at most {limit}, got {}",
            char_len(value)
        ),
        K::MinLength { limit } => format!(
            "string too short, expected at least {limit}, got {}",
            char_len(value)
        ),
        K::MinItems { limit } => format!("expect array to have at least {limit} items"),
        K::MaxItems { limit } => format!("expect array to have at most {limit} items"),
        K::MinProperties { limit } => format!("expect object to have at least {limit} properties"),
        K::MaxProperties { limit } => format!("expect object to have at most {limit} properties"),
        K::UniqueItems => {
            let (a, b) = first_duplicate(value);
            format!("expected unique items but items {a} and {b} are equal")
        }
        K::Enum { .. } => "matches none of the enum values".to_owned(),
        K::Pattern { pattern } => format!(
            "failed to match pattern \"{pattern}\" with {}",
            quoted(value)
        ),
        K::AnyOf { .. } => "object matches none of the required".to_owned(),
        K::OneOfNotValid { .. } => {
            "value should match only one schema, but matches none".to_owned()
        }
        K::OneOfMultipleValid { context } => {
            let valid: Vec<usize> = context
                .iter()
                .enumerate()
                .filter(|(_, errors)| errors.is_empty())
                .map(|(i, _)| i + 1)
                .collect();
            let (a, b) = match valid.as_slice() {
                [a, b, ..] => (*a, *b),
                _ => (1, 2),
            };
            format!("value should match only one schema, but matches both schemas {a} and {b}")
        }
        K::AdditionalProperties { unexpected } => format!(
            "additional properties forbidden, found {}",
            unexpected.first().map(String::as_str).unwrap_or_default()
        ),
        K::Not { .. } => "value wasn't supposed to match schema".to_owned(),
        K::Format { format } => format!(
            "expect valid {format} format but got: {}",
            value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned)
        ),
        other => other.keyword().to_owned() + " validation failed",
    }
}

fn quoted(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

fn char_len(value: &Value) -> usize {
    value.as_str().map_or(0, |s| s.chars().count())
}

fn first_duplicate(value: &Value) -> (usize, usize) {
    let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
    for (i, a) in items.iter().enumerate() {
        if let Some(j) = items[i + 1..].iter().position(|b| a == b) {
            return (i + 1, i + j + 2);
        }
    }
    (1, 2)
}

/// The type name APISIX's validator reports for a decoded JSON value: Lua's `type()`, so every
/// number is a `number`, objects and arrays are tables, and cjson's null is a userdata.
fn lua_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "userdata",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) | Value::Object(_) => "table",
    }
}
