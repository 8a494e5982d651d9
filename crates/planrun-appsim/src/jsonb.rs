//! JSON compared as jsonb stores it: expected values go through the server once, so key
//! order and number spelling match what the database reads back.

use std::collections::HashMap;

use postgres::Client;
use serde_json::Value;

/// Turns JSON text into the value jsonb makes of it (key order, number spelling), by
/// asking the server; caches the answers.
pub(crate) struct JsonNormalizer<'a> {
    client: &'a mut Client,
    cache: HashMap<String, Value>,
}

impl<'a> JsonNormalizer<'a> {
    pub(crate) fn new(client: &'a mut Client) -> Self {
        JsonNormalizer {
            client,
            cache: HashMap::new(),
        }
    }

    pub(crate) fn normalize(&mut self, text: &str) -> Value {
        if let Some(value) = self.cache.get(text) {
            return value.clone();
        }
        let normalized: String = self
            .client
            .query_one("SELECT $1::text::jsonb::text", &[&text])
            .unwrap_or_else(|e| panic!("jsonb rejects the simulator's own JSON {text}: {e}"))
            .get(0);
        let value = parse(&normalized);
        self.cache.insert(text.to_owned(), value.clone());
        value
    }
}

pub(crate) fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("jsonb printed invalid JSON {text}: {e}"))
}
