//! A cursor over the parsed YAML document that remembers its dotted key, so every error and
//! warning names the exact key.

use serde_json::Value;

use super::ConfigError;

/// A (possibly absent) value at a dotted key.
pub(crate) struct Node<'a> {
    key: String,
    value: Option<&'a Value>,
}

impl<'a> Node<'a> {
    pub(crate) fn root(doc: &'a Value) -> Result<Self, ConfigError> {
        match doc {
            Value::Null => Ok(Node {
                key: String::new(),
                value: None,
            }),
            Value::Object(_) => Ok(Node {
                key: String::new(),
                value: Some(doc),
            }),
            _ => Err(ConfigError::new(
                "config.yaml",
                "the document must be a mapping",
            )),
        }
    }

    /// The value, treating YAML `null` (`key:` with nothing after it) as absent.
    pub(crate) fn value(&self) -> Option<&'a Value> {
        self.value.filter(|v| !v.is_null())
    }

    pub(crate) fn child(&self, name: &str) -> Node<'a> {
        let key = if self.key.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.key)
        };
        Node {
            key,
            value: self.value().and_then(|v| v.get(name)),
        }
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.key.clone(), reason)
    }

    fn type_error(&self, expected: &str) -> ConfigError {
        self.error(format!("expected {expected}, got {}", describe(self.value)))
    }

    pub(crate) fn str(&self) -> Result<&'a str, ConfigError> {
        self.value()
            .and_then(Value::as_str)
            .ok_or_else(|| self.type_error("a string"))
    }

    pub(crate) fn opt_str(&self) -> Result<Option<&'a str>, ConfigError> {
        self.value().map(|_| self.str()).transpose()
    }

    pub(crate) fn str_or(&self, default: &'a str) -> Result<&'a str, ConfigError> {
        Ok(self.opt_str()?.unwrap_or(default))
    }

    pub(crate) fn bool_or(&self, default: bool) -> Result<bool, ConfigError> {
        match self.value() {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.type_error("a boolean")),
        }
    }

    pub(crate) fn positive_number_or(&self, default: f64) -> Result<f64, ConfigError> {
        match self.value() {
            None => Ok(default),
            Some(v) => match v.as_f64() {
                Some(n) if n > 0.0 && n.is_finite() => Ok(n),
                _ => Err(self.type_error("a positive number")),
            },
        }
    }

    pub(crate) fn items(&self) -> Result<Vec<Node<'a>>, ConfigError> {
        match self.value() {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| Node {
                    key: format!("{}[{i}]", self.key),
                    value: Some(v),
                })
                .collect()),
            Some(_) => Err(self.type_error("a list")),
        }
    }

    /// Adds a warning for each child key that is not listed in `known` (full dotted keys).
    pub(crate) fn warn_unknown(&self, known: &[&str], warnings: &mut Vec<String>) {
        let Some(Value::Object(map)) = self.value() else {
            return;
        };
        for name in map.keys() {
            let key = self.child(name).key;
            if !known.contains(&key.as_str()) {
                warnings.push(format!(
                    "ignoring `{key}`: streamgate does not use it (APISIX HTTP-side setting)"
                ));
            }
        }
    }
}

fn describe(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "nothing".to_owned(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(Value::Array(_)) => "a list".to_owned(),
        Some(Value::Object(_)) => "a mapping".to_owned(),
        Some(other) => other.to_string(),
    }
}
