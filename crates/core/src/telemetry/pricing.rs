//! Estimated cost of model calls: US dollars per million tokens, per model.
//!
//! The built-in table holds Bedrock's published on-demand prices (US East)
//! for the models this service is usually configured with, as of 2025. They
//! change and differ by region and contract, so `MODEL_PRICES` replaces or
//! adds entries; a model in neither has no cost metric rather than a wrong
//! one. Cross-region inference profile ids (`us.`, `eu.`, `apac.`,
//! `global.` before the model id) are priced as their model.

use std::collections::HashMap;

use serde::Deserialize;

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input_per_million: f64,
    #[serde(default)]
    pub output_per_million: f64,
}

const fn price(input_per_million: f64, output_per_million: f64) -> ModelPrice {
    ModelPrice {
        input_per_million,
        output_per_million,
    }
}

const BUILT_IN: &[(&str, ModelPrice)] = &[
    ("anthropic.claude-3-haiku-20240307-v1:0", price(0.25, 1.25)),
    (
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        price(0.80, 4.00),
    ),
    (
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        price(3.00, 15.00),
    ),
    (
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        price(3.00, 15.00),
    ),
    (
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        price(3.00, 15.00),
    ),
    (
        "anthropic.claude-sonnet-4-20250514-v1:0",
        price(3.00, 15.00),
    ),
    ("amazon.nova-micro-v1:0", price(0.035, 0.14)),
    ("amazon.nova-lite-v1:0", price(0.06, 0.24)),
    ("amazon.nova-pro-v1:0", price(0.80, 3.20)),
    ("amazon.titan-embed-text-v2:0", price(0.02, 0.0)),
    ("amazon.titan-embed-text-v1", price(0.10, 0.0)),
];

const PROFILE_PREFIXES: &[&str] = &["us.", "eu.", "apac.", "us-gov.", "global."];

/// Prices by model id.
#[derive(Debug, Clone)]
pub struct PriceTable {
    prices: HashMap<String, ModelPrice>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            prices: BUILT_IN
                .iter()
                .map(|(model, price)| ((*model).to_string(), *price))
                .collect(),
        }
    }
}

impl PriceTable {
    /// The built-in table with `overrides` (a JSON object of model id to
    /// `{"input_per_million", "output_per_million"}`) laid over it.
    pub fn with_overrides(overrides: &str) -> Result<Self, String> {
        let parsed: HashMap<String, ModelPrice> = serde_json::from_str(overrides).map_err(|e| {
            format!(
                "MODEL_PRICES must be a JSON object of model id to {{\"input_per_million\": ..., \"output_per_million\": ...}}: {e}"
            )
        })?;
        let mut table = Self::default();
        for (model, price) in parsed {
            if !(price.input_per_million.is_finite()
                && price.output_per_million.is_finite()
                && price.input_per_million >= 0.0
                && price.output_per_million >= 0.0)
            {
                return Err(format!(
                    "MODEL_PRICES: the prices of {model} must be finite and not negative"
                ));
            }
            table.prices.insert(model, price);
        }
        Ok(table)
    }

    pub fn price_of(&self, model: &str) -> Option<ModelPrice> {
        if let Some(price) = self.prices.get(model) {
            return Some(*price);
        }
        let base = PROFILE_PREFIXES
            .iter()
            .find_map(|prefix| model.strip_prefix(prefix))?;
        self.prices.get(base).copied()
    }

    /// Dollars the call cost, if the model's price is known.
    pub fn cost(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Option<f64> {
        let price = self.price_of(model)?;
        Some(
            (input_tokens as f64 * price.input_per_million
                + output_tokens as f64 * price.output_per_million)
                / 1_000_000.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_model_costs_its_tokens() {
        let table = PriceTable::default();
        let cost = table
            .cost("anthropic.claude-3-haiku-20240307-v1:0", 1_000_000, 200_000)
            .unwrap();
        assert!((cost - 0.5).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn an_inference_profile_is_priced_as_its_model() {
        let table = PriceTable::default();
        assert_eq!(
            table.price_of("us.amazon.nova-lite-v1:0"),
            table.price_of("amazon.nova-lite-v1:0")
        );
        assert!(table.price_of("llama3.2").is_none());
        assert!(table.cost("llama3.2", 10, 10).is_none());
    }

    #[test]
    fn overrides_replace_and_add() {
        let table = PriceTable::with_overrides(
            r#"{"llama3.2": {"input_per_million": 0, "output_per_million": 0},
                "amazon.nova-lite-v1:0": {"input_per_million": 1, "output_per_million": 2}}"#,
        )
        .unwrap();
        assert_eq!(table.cost("llama3.2", 100, 100), Some(0.0));
        assert_eq!(
            table.cost("amazon.nova-lite-v1:0", 1_000_000, 1_000_000),
            Some(3.0)
        );
        assert!(PriceTable::with_overrides(r#"{"m": {"input_per_million": -1}}"#).is_err());
        assert!(PriceTable::with_overrides(r#"{"m": {"input": 1}}"#).is_err());
        assert!(PriceTable::with_overrides("[]").is_err());
    }
}
