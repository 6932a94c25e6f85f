//! Byte sizes in config: a plain number of bytes, or a string with a unit
//! (`512KiB`, `4MiB`, `256MiB`, `1GiB`; `KB`, `MB`, `GB` are powers of ten).

use serde::{Deserialize, Deserializer};

/// Parses `4MiB`, `1.5GB`, `1024` or `1024B` into bytes.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let text = raw.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a size like \"4MiB\" or a number of bytes"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {raw:?}")),
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{raw:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Bytes(u64),
    Text(String),
}

fn from_raw<E: serde::de::Error>(raw: Raw) -> Result<u64, E> {
    match raw {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(t) => {
            parse_size(&super::expand_env(&t, |n| std::env::var(n).ok()).map_err(E::custom)?)
                .map_err(E::custom)
        }
    }
}

pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    from_raw(Raw::deserialize(d)?)
}

pub fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<Raw>::deserialize(d)?.map(from_raw).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_binary_and_decimal_units() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("256 MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("10kb"), Ok(10_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("7B"), Ok(7));
        assert!(parse_size("4 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
