//! The S3 Vectors metadata filter language, evaluated against one vector's
//! metadata: implicit equality, `$eq $ne $gt $gte $lt $lte $in $nin $exists`
//! on fields, and `$and` / `$or` over sub-filters.

use serde_json::Value;

/// Whether `metadata` satisfies `filter`; `Err` names what is malformed,
/// which the service reports as a `ValidationException`.
pub fn matches(filter: &Value, metadata: &Value) -> Result<bool, String> {
    let Value::Object(clauses) = filter else {
        return Err("a filter must be a JSON object".to_string());
    };
    for (key, condition) in clauses {
        let ok = match key.as_str() {
            "$and" => all_of(condition, metadata)?,
            "$or" => any_of(condition, metadata)?,
            op if op.starts_with('$') => {
                return Err(format!("unsupported top-level operator {op}"));
            }
            field => field_matches(metadata.get(field), condition)?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn sub_filters(condition: &Value) -> Result<&Vec<Value>, String> {
    match condition {
        Value::Array(items) if !items.is_empty() => Ok(items),
        _ => Err("$and and $or take a non-empty array of filters".to_string()),
    }
}

fn all_of(condition: &Value, metadata: &Value) -> Result<bool, String> {
    for sub in sub_filters(condition)? {
        if !matches(sub, metadata)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn any_of(condition: &Value, metadata: &Value) -> Result<bool, String> {
    for sub in sub_filters(condition)? {
        if matches(sub, metadata)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn field_matches(value: Option<&Value>, condition: &Value) -> Result<bool, String> {
    let Value::Object(ops) = condition else {
        // A bare literal is shorthand for `$eq`.
        return Ok(value.is_some_and(|v| equals(v, condition)));
    };
    for (op, operand) in ops {
        let ok = match op.as_str() {
            "$eq" => value.is_some_and(|v| equals(v, operand)),
            "$ne" => !value.is_some_and(|v| equals(v, operand)),
            "$gt" => compare(value, operand)?.is_some_and(|o| o.is_gt()),
            "$gte" => compare(value, operand)?.is_some_and(|o| o.is_ge()),
            "$lt" => compare(value, operand)?.is_some_and(|o| o.is_lt()),
            "$lte" => compare(value, operand)?.is_some_and(|o| o.is_le()),
            "$in" => in_list(value, operand)?,
            "$nin" => !in_list(value, operand)?,
            "$exists" => match operand {
                Value::Bool(expected) => value.is_some() == *expected,
                _ => return Err("$exists takes a boolean".to_string()),
            },
            other => return Err(format!("unsupported operator {other}")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Equality where an array-valued field matches when any element does, as
/// S3 Vectors treats list metadata.
fn equals(value: &Value, operand: &Value) -> bool {
    match (value, operand) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(items), _) if !operand.is_array() => items.iter().any(|i| equals(i, operand)),
        _ => value == operand,
    }
}

fn compare(value: Option<&Value>, operand: &Value) -> Result<Option<std::cmp::Ordering>, String> {
    let Some(bound) = operand.as_f64() else {
        return Err("range operators take a number".to_string());
    };
    Ok(value
        .and_then(Value::as_f64)
        .and_then(|v| v.partial_cmp(&bound)))
}

fn in_list(value: Option<&Value>, operand: &Value) -> Result<bool, String> {
    let Value::Array(options) = operand else {
        return Err("$in and $nin take an array".to_string());
    };
    Ok(value.is_some_and(|v| options.iter().any(|o| equals(v, o))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_operator() {
        let m = json!({"document_id": "a", "n": 5, "tags": ["x", "y"]});
        let cases = [
            (json!({"document_id": "a"}), true),
            (json!({"document_id": {"$eq": "b"}}), false),
            (json!({"document_id": {"$ne": "b"}}), true),
            (json!({"n": {"$gt": 4}}), true),
            (json!({"n": {"$gte": 5, "$lt": 5}}), false),
            (json!({"n": {"$lte": 5}}), true),
            (json!({"document_id": {"$in": ["b", "a"]}}), true),
            (json!({"document_id": {"$nin": ["b", "a"]}}), false),
            (json!({"missing": {"$exists": false}}), true),
            (json!({"n": {"$exists": false}}), false),
            (json!({"tags": "y"}), true),
            (json!({"$and": [{"n": 5}, {"document_id": "b"}]}), false),
            (json!({"$or": [{"n": 6}, {"document_id": "a"}]}), true),
            (json!({"missing": {"$ne": "z"}}), true),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(&filter, &m), Ok(expected), "{filter}");
        }
    }

    #[test]
    fn malformed_filters_are_errors() {
        let m = json!({});
        for filter in [
            json!([1]),
            json!({"$nope": []}),
            json!({"a": {"$in": 3}}),
            json!({"$and": []}),
            json!({"a": {"$gt": "x"}}),
        ] {
            assert!(matches(&filter, &m).is_err(), "{filter}");
        }
    }
}
