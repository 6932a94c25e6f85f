//! `${VAR}` expansion for string values in the config.
//!
//! Expansion happens while deserializing, field by field, so an error names
//! the variable and the parser can still point at the line. `$${` escapes a
//! literal `${`. A variable that is not set is an error, never an empty
//! string: an unset key silently becoming "" would fail far from its cause.

use serde::{Deserialize, Deserializer, de::Error as _};

/// Expands every `${NAME}` in `input` with `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in {input:?}"))?;
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid environment variable name `{name}`"));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn from_process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `deserialize_with` helper: a string with `${VAR}` expanded.
pub fn expanded_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    expand(&raw, from_process_env).map_err(D::Error::custom)
}

/// `deserialize_with` helper: an optional expanded string.
pub fn expanded_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|raw| expand(&raw, from_process_env).map_err(D::Error::custom))
        .transpose()
}

/// `deserialize_with` helper: a list of expanded strings.
pub fn expanded_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(|raw| expand(&raw, from_process_env).map_err(D::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-123".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_anywhere_in_the_string() {
        assert_eq!(expand("${KEY}", env).unwrap(), "sk-123");
        assert_eq!(expand("Bearer ${KEY}!", env).unwrap(), "Bearer sk-123!");
        assert_eq!(expand("a${EMPTY}b", env).unwrap(), "ab");
    }

    #[test]
    fn leaves_plain_dollars_and_unescapes_double_dollar() {
        assert_eq!(expand("cost $5", env).unwrap(), "cost $5");
        assert_eq!(expand("$${KEY}", env).unwrap(), "${KEY}");
        assert_eq!(expand("trailing $", env).unwrap(), "trailing $");
    }

    #[test]
    fn missing_variable_is_an_error_that_names_it() {
        let err = expand("${NOPE}", env).unwrap_err();
        assert!(err.contains("NOPE"), "{err}");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(expand("${KEY", env).is_err());
        assert!(expand("${}", env).is_err());
        assert!(expand("${A-B}", env).is_err());
    }
}
