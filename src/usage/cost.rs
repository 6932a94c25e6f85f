//! What tokens cost: a model's prices, and the cost of settled usage.
//!
//! Costs are counted in billionths of a US dollar (nano-USD) in `u64`s, so
//! they add up exactly across requests, instances and restarts: a dollar
//! is 10⁹, and a counter holds eighteen billion dollars. Prices come as
//! USD per million tokens, as providers publish them; one such dollar is a
//! thousand nano-USD per token.

use super::TokenUsage;

/// Nano-USD in a dollar.
pub const NANOS_PER_USD: f64 = 1e9;

/// A model's prices, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Prompt tokens read from the provider's cache; the input price when
    /// the provider publishes none.
    pub cached_input: Option<f64>,
}

impl Price {
    /// The cost of `usage` in nano-USD: cached prompt tokens at the cached
    /// price, the rest of the prompt at the input price, the completion at
    /// the output price.
    pub fn cost_nanos(&self, usage: &TokenUsage) -> u64 {
        let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        let per_million = uncached as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + usage.completion_tokens as f64 * self.output;
        // USD per million tokens × tokens = micro-USD; × 1000 = nano-USD.
        let nanos = per_million * 1_000.0;
        if nanos.is_finite() && nanos > 0.0 {
            nanos.round() as u64
        } else {
            0
        }
    }
}

/// Nano-USD as dollars, for logs, headers and reports.
pub fn usd(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, cached: u64, completion: u64) -> TokenUsage {
        TokenUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            cached_prompt_tokens: cached,
        }
    }

    #[test]
    fn cached_prompt_tokens_cost_the_cached_price() {
        // gpt-4o: $2.50 in, $10 out, $1.25 cached, per million tokens.
        let p = Price {
            input: 2.5,
            output: 10.0,
            cached_input: Some(1.25),
        };
        // 1,000 prompt tokens, 400 of them cached, 200 completion tokens:
        // 600 × 2.5 + 400 × 1.25 + 200 × 10 = 4,000 micro-USD.
        assert_eq!(p.cost_nanos(&usage(1_000, 400, 200)), 4_000_000);
        assert_eq!(usd(p.cost_nanos(&usage(1_000, 400, 200))), 0.004);
        // Without a cached price, cached tokens cost the input price.
        let q = Price {
            cached_input: None,
            ..p
        };
        assert_eq!(q.cost_nanos(&usage(1_000, 400, 200)), 4_500_000);
        // A cached count above the prompt (a provider's rounding) is capped.
        assert_eq!(p.cost_nanos(&usage(10, 50, 0)), 12_500);
        assert_eq!(p.cost_nanos(&usage(0, 0, 0)), 0);
        // One token of a cheap model still counts: fractions round.
        let cheap = Price {
            input: 0.15,
            output: 0.6,
            cached_input: None,
        };
        assert_eq!(cheap.cost_nanos(&usage(1, 0, 0)), 150);
        assert_eq!(cheap.cost_nanos(&usage(3, 0, 7)), 450 + 4_200);
    }

    #[test]
    fn nonsense_prices_cost_nothing_rather_than_wrap() {
        let p = Price {
            input: f64::NAN,
            output: -1.0,
            cached_input: None,
        };
        assert_eq!(p.cost_nanos(&usage(10, 0, 10)), 0);
    }
}
