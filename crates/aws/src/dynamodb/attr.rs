//! JSON values as DynamoDB attributes and back, so records are stored as
//! native, readable attributes rather than an opaque blob.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

pub type Item = HashMap<String, AttributeValue>;

pub fn to_attr(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attr).collect()),
        Value::Object(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect())
        }
    }
}

pub fn to_json(attr: &AttributeValue) -> Value {
    match attr {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => n
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| n.parse::<i64>().map(Value::from))
            .unwrap_or_else(|_| {
                n.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(items) => Value::Array(items.iter().map(to_json).collect()),
        AttributeValue::M(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        AttributeValue::Ss(items) => {
            Value::Array(items.iter().cloned().map(Value::String).collect())
        }
        _ => Value::Null,
    }
}

/// A JSON object's fields as an item's attributes.
pub fn object_to_item(value: &Value) -> Item {
    match value {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect(),
        _ => Item::new(),
    }
}

pub fn item_to_object(item: &Item) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips() {
        let value = json!({"a": 1, "b": -2, "c": 2.5, "d": "x", "e": null, "f": [true, {"g": "h"}], "i": {}});
        assert_eq!(item_to_object(&object_to_item(&value)), value);
    }
}
