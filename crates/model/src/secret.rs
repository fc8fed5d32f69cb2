//! Secret references in SSL objects, as APISIX stores them: `$ENV://NAME` is read from the
//! gateway's environment when the object is compiled; `$secret://…` names a secret manager,
//! which streamgate does not have, so such an object is left out with the reason.

use std::borrow::Cow;

/// Whether `value` is a reference rather than the secret itself (`$secret://`, or `$ENV://`
/// in any case, as APISIX's schema allows `$env://` too).
pub fn is_reference(value: &str) -> bool {
    value.starts_with("$secret://") || env_name(value).is_some()
}

fn env_name(value: &str) -> Option<&str> {
    let prefix = value.get(..7)?;
    prefix.eq_ignore_ascii_case("$env://").then(|| &value[7..])
}

/// A secret reference that cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {name} (from {reference}) is not set")]
    UnsetVariable { name: String, reference: String },
    #[error("{0}: secret managers are not supported, only $ENV:// references")]
    SecretManager(String),
}

/// The secret `value` stands for: itself, or what its reference names.
pub fn resolve(value: &str) -> Result<Cow<'_, str>, SecretError> {
    if let Some(name) = env_name(value) {
        return std::env::var(name)
            .map(Cow::Owned)
            .map_err(|_| SecretError::UnsetVariable {
                name: name.to_owned(),
                reference: value.to_owned(),
            });
    }
    if value.starts_with("$secret://") {
        return Err(SecretError::SecretManager(value.to_owned()));
    }
    Ok(Cow::Borrowed(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_from_the_environment() {
        std::env::set_var("SG_SECRET_TEST_PEM", "-----BEGIN TEST-----");
        assert_eq!(
            resolve("$ENV://SG_SECRET_TEST_PEM").unwrap(),
            "-----BEGIN TEST-----"
        );
        assert_eq!(
            resolve("$env://SG_SECRET_TEST_PEM").unwrap(),
            "-----BEGIN TEST-----"
        );
        assert_eq!(resolve("plain").unwrap(), "plain");
        let missing = resolve("$ENV://SG_SECRET_TEST_NONE")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("SG_SECRET_TEST_NONE"), "{missing}");
        assert!(resolve("$secret://vault/1/cert").is_err());
        assert!(is_reference("$secret://vault/1/cert") && is_reference("$Env://X"));
        assert!(!is_reference("-----BEGIN CERTIFICATE-----"));
    }
}
