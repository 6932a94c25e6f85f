//! Model prices: typed into the config (`providers[].prices`), or read from
//! the table LiteLLM publishes and maintains (`prices_file`,
//! `model_prices_and_context_window.json`), so nobody types a price list
//! that goes stale. The router ships none.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::usage::cost::Price;

/// A price as written in the config: USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
}

impl From<PriceConfig> for Price {
    fn from(p: PriceConfig) -> Self {
        Price {
            input: p.input,
            output: p.output,
            cached_input: p.cached_input,
        }
    }
}

/// Prices by model name, from a prices file.
pub type PriceTable = HashMap<String, Price>;

/// A model's price on a provider: the provider's own (`explicit`), else the
/// table's under the model's name, `{type}/{model}` or `{provider}/{model}`
/// (as LiteLLM's table names, say, `azure/gpt-4o`).
pub fn lookup(
    explicit: Option<Price>,
    table: &PriceTable,
    kind: &str,
    provider: &str,
    model: &str,
) -> Option<Price> {
    explicit.or_else(|| {
        table
            .get(model)
            .or_else(|| table.get(&format!("{kind}/{model}")))
            .or_else(|| table.get(&format!("{provider}/{model}")))
            .copied()
    })
}

/// One entry of LiteLLM's table (USD per token; other fields ignored).
#[derive(Deserialize)]
struct LiteLlmEntry {
    #[serde(default)]
    input_cost_per_token: Option<Number>,
    #[serde(default)]
    output_cost_per_token: Option<Number>,
    #[serde(default)]
    cache_read_input_token_cost: Option<Number>,
}

/// A cost as the table writes it: a number, or now and then a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Float(f64),
    Text(String),
}

impl Number {
    fn value(&self) -> Option<f64> {
        let v = match self {
            Self::Float(f) => *f,
            Self::Text(t) => t.trim().parse().ok()?,
        };
        (v.is_finite() && v >= 0.0).then_some(v)
    }
}

/// Reads LiteLLM's price table: every entry with both an input and an
/// output cost per token becomes a price per million tokens. Entries
/// without them (image or audio models, the `sample_spec`) are skipped.
pub fn read_prices_file(path: &Path) -> Result<PriceTable, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_prices(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses LiteLLM's price table (see [`read_prices_file`]).
pub fn parse_prices(text: &str) -> Result<PriceTable, String> {
    let entries: HashMap<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| format!("not LiteLLM's model price table (a JSON object of models): {e}"))?;
    let mut out = PriceTable::new();
    for (model, value) in entries {
        let Ok(entry) = serde_json::from_value::<LiteLlmEntry>(value) else {
            continue;
        };
        let per_million = |n: &Option<Number>| n.as_ref().and_then(Number::value).map(|v| v * 1e6);
        if let (Some(input), Some(output)) = (
            per_million(&entry.input_cost_per_token),
            per_million(&entry.output_cost_per_token),
        ) {
            let cached_input = per_million(&entry.cache_read_input_token_cost);
            out.insert(
                model,
                Price {
                    input,
                    output,
                    cached_input,
                },
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litellms_table_reads_as_prices_per_million() {
        let table = parse_prices(
            r#"{
            "sample_spec": {"max_tokens": "set to max_output_tokens if provider specifies it", "input_cost_per_token": 0.0},
            "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06},
            "azure/gpt-4o": {"input_cost_per_token": "2.75e-06", "output_cost_per_token": 1.1e-05},
            "dall-e-3": {"mode": "image_generation", "output_cost_per_image": 0.04},
            "broken": {"input_cost_per_token": -1, "output_cost_per_token": 1e-06}
        }"#,
        )
        .unwrap();
        let gpt = table["gpt-4o"];
        assert!((gpt.input - 2.5).abs() < 1e-9 && (gpt.output - 10.0).abs() < 1e-9);
        assert!((gpt.cached_input.unwrap() - 1.25).abs() < 1e-9);
        assert!((table["azure/gpt-4o"].input - 2.75).abs() < 1e-9);
        assert_eq!(table["azure/gpt-4o"].cached_input, None);
        assert!(!table.contains_key("dall-e-3") && !table.contains_key("broken"));
        assert!(!table.contains_key("sample_spec"));
        assert!(parse_prices("[1, 2]").unwrap_err().contains("LiteLLM"));
    }
}
