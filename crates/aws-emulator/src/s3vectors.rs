//! Amazon S3 Vectors over its REST-JSON wire format: vector buckets, indexes,
//! put/get/list/delete of vectors and `QueryVectors` with exact top-k and the
//! metadata filter language. Limits follow the service (topK <= 100,
//! PutVectors/DeleteVectors <= 500, GetVectors <= 100).
//!
//! Both index modes keep their documented semantics: an `ENHANCED` index
//! applies a filter before the search, so it returns the true top-k of the
//! matching vectors; a `CLASSIC` index (the default at creation) applies it
//! during the search, emulated as a filter over the nearest
//! `CLASSIC_CANDIDATES_PER_HIT * topK` vectors, so a selective filter can
//! return fewer than topK, as the service may.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::filter;
use crate::{AwsError, Emulator, EmulatorState, json_response};

#[derive(Debug, Default)]
pub struct VectorState {
    buckets: Mutex<HashMap<String, HashMap<String, Index>>>,
}

/// How many nearest vectors per requested hit a `CLASSIC` search looks at
/// before its filter.
const CLASSIC_CANDIDATES_PER_HIT: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Classic,
    Enhanced,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Classic => "CLASSIC",
            Mode::Enhanced => "ENHANCED",
        }
    }

    fn parse(value: Option<&Value>) -> Result<Option<Self>, AwsError> {
        match value.and_then(Value::as_str) {
            None => Ok(None),
            Some("CLASSIC") => Ok(Some(Mode::Classic)),
            Some("ENHANCED") => Ok(Some(Mode::Enhanced)),
            Some(other) => Err(AwsError::validation(format!(
                "index mode must be CLASSIC or ENHANCED, not {other}"
            ))),
        }
    }
}

#[derive(Debug)]
struct Index {
    dimension: usize,
    metric: Metric,
    mode: Mode,
    created: f64,
    non_filterable: Vec<String>,
    vectors: BTreeMap<String, (Vec<f32>, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Cosine,
    Euclidean,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Euclidean => "euclidean",
        }
    }

    fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => {
                let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
                for (x, y) in a.iter().zip(b) {
                    dot += x * y;
                    na += x * x;
                    nb += y * y;
                }
                let norm = (na.sqrt() * nb.sqrt()).max(f32::MIN_POSITIVE);
                1.0 - dot / norm
            }
            Metric::Euclidean => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt(),
        }
    }
}

impl Emulator {
    /// How many vectors an index holds, for assertions.
    pub fn vector_count(&self, bucket: &str, index: &str) -> usize {
        let buckets = self.state.vectors.buckets.lock().unwrap();
        buckets
            .get(bucket)
            .and_then(|b| b.get(index))
            .map_or(0, |i| i.vectors.len())
    }
}

pub async fn handle(
    State(state): State<std::sync::Arc<EmulatorState>>,
    Path(operation): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return AwsError::validation(format!("malformed JSON: {e}")).into_response(),
        }
    };
    let vectors = &state.vectors;
    let result = match operation.as_str() {
        "CreateVectorBucket" => vectors.create_bucket(&body),
        "GetVectorBucket" => vectors.get_bucket(&body),
        "DeleteVectorBucket" => vectors.delete_bucket(&body),
        "CreateIndex" => vectors.create_index(&body),
        "GetIndex" => vectors.get_index(&body),
        "UpdateIndexMode" => vectors.update_index_mode(&body),
        "DeleteIndex" => vectors.delete_index(&body),
        "ListIndexes" => vectors.list_indexes(&body),
        "PutVectors" => vectors.put(&body),
        "GetVectors" => vectors.get(&body),
        "DeleteVectors" => vectors.delete(&body),
        "ListVectors" => vectors.list(&body),
        "QueryVectors" => vectors.query(&body),
        other => Err(AwsError::new(
            404,
            "UnknownOperationException",
            format!("{other} is not emulated"),
        )),
    };
    match result {
        Ok(value) => json_response(200, &value),
        Err(e) => e.into_response(),
    }
}

fn string<'a>(body: &'a Value, field: &str) -> Result<&'a str, AwsError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AwsError::validation(format!("{field} is required")))
}

fn bucket_name(body: &Value) -> Result<String, AwsError> {
    if let Some(arn) = body.get("indexArn").and_then(Value::as_str) {
        // arn:aws:s3vectors:region:account:bucket/<bucket>/index/<index>
        if let Some(rest) = arn.split(":bucket/").nth(1) {
            return Ok(rest.split('/').next().unwrap_or_default().to_string());
        }
    }
    Ok(string(body, "vectorBucketName")?.to_string())
}

/// The service's rule for index names.
fn valid_index_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

fn index_name(body: &Value) -> Result<String, AwsError> {
    if let Some(arn) = body.get("indexArn").and_then(Value::as_str)
        && let Some(name) = arn.split("/index/").nth(1)
    {
        return Ok(name.to_string());
    }
    Ok(string(body, "indexName")?.to_string())
}

fn float32(data: Option<&Value>) -> Result<Vec<f32>, AwsError> {
    let values = data
        .and_then(|d| d.get("float32"))
        .and_then(Value::as_array)
        .ok_or_else(|| AwsError::validation("data.float32 is required"))?;
    values
        .iter()
        .map(|v| {
            v.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| AwsError::validation("vector values must be numbers"))
        })
        .collect()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64().floor())
}

impl VectorState {
    fn with_index<T>(
        &self,
        body: &Value,
        f: impl FnOnce(&mut Index) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let bucket = bucket_name(body)?;
        let index = index_name(body)?;
        let mut buckets = self.buckets.lock().unwrap();
        let indexes = buckets
            .get_mut(&bucket)
            .ok_or_else(|| AwsError::not_found(format!("vector bucket {bucket} does not exist")))?;
        let index = indexes
            .get_mut(&index)
            .ok_or_else(|| AwsError::not_found(format!("index {index} does not exist")))?;
        f(index)
    }

    fn create_bucket(&self, body: &Value) -> Result<Value, AwsError> {
        let name = string(body, "vectorBucketName")?;
        let mut buckets = self.buckets.lock().unwrap();
        if buckets.contains_key(name) {
            return Err(AwsError::new(
                409,
                "ConflictException",
                "the vector bucket already exists",
            ));
        }
        buckets.insert(name.to_string(), HashMap::new());
        Ok(json!({}))
    }

    fn get_bucket(&self, body: &Value) -> Result<Value, AwsError> {
        let name = string(body, "vectorBucketName")?;
        let buckets = self.buckets.lock().unwrap();
        if !buckets.contains_key(name) {
            return Err(AwsError::not_found(format!(
                "vector bucket {name} does not exist"
            )));
        }
        Ok(json!({"vectorBucket": {
            "vectorBucketName": name,
            "vectorBucketArn": format!("arn:aws:s3vectors:us-east-1:123456789012:bucket/{name}"),
            "creationTime": now(),
        }}))
    }

    fn delete_bucket(&self, body: &Value) -> Result<Value, AwsError> {
        let name = string(body, "vectorBucketName")?;
        let mut buckets = self.buckets.lock().unwrap();
        match buckets.get(name) {
            None => Err(AwsError::not_found(format!(
                "vector bucket {name} does not exist"
            ))),
            Some(indexes) if !indexes.is_empty() => Err(AwsError::new(
                409,
                "ConflictException",
                "the vector bucket is not empty",
            )),
            Some(_) => {
                buckets.remove(name);
                Ok(json!({}))
            }
        }
    }

    fn create_index(&self, body: &Value) -> Result<Value, AwsError> {
        let bucket = bucket_name(body)?;
        let name = string(body, "indexName")?.to_string();
        if !valid_index_name(&name) {
            return Err(AwsError::validation(format!(
                "index name {name:?} must be 3 to 63 lowercase letters, digits, hyphens or dots, starting and ending with a letter or digit"
            )));
        }
        let dimension = body
            .get("dimension")
            .and_then(Value::as_u64)
            .filter(|d| (1..=4096).contains(d))
            .ok_or_else(|| AwsError::validation("dimension must be between 1 and 4096"))?
            as usize;
        let metric = match body.get("distanceMetric").and_then(Value::as_str) {
            Some("cosine") => Metric::Cosine,
            Some("euclidean") => Metric::Euclidean,
            _ => {
                return Err(AwsError::validation(
                    "distanceMetric must be cosine or euclidean",
                ));
            }
        };
        if body.get("dataType").and_then(Value::as_str) != Some("float32") {
            return Err(AwsError::validation("dataType must be float32"));
        }
        let non_filterable: Vec<String> = body
            .pointer("/metadataConfiguration/nonFilterableMetadataKeys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if non_filterable.len() > 10 {
            return Err(AwsError::validation(
                "at most 10 non-filterable metadata keys",
            ));
        }
        let mut buckets = self.buckets.lock().unwrap();
        let indexes = buckets
            .get_mut(&bucket)
            .ok_or_else(|| AwsError::not_found(format!("vector bucket {bucket} does not exist")))?;
        if indexes.contains_key(&name) {
            return Err(AwsError::new(
                409,
                "ConflictException",
                "the index already exists",
            ));
        }
        indexes.insert(
            name,
            Index {
                dimension,
                metric,
                mode: Mode::Classic,
                created: now(),
                non_filterable,
                vectors: BTreeMap::new(),
            },
        );
        Ok(json!({}))
    }

    fn update_index_mode(&self, body: &Value) -> Result<Value, AwsError> {
        let mode = Mode::parse(body.get("indexMode"))?
            .ok_or_else(|| AwsError::validation("indexMode is required"))?;
        self.with_index(body, |index| {
            index.mode = mode;
            Ok(json!({}))
        })
    }

    fn get_index(&self, body: &Value) -> Result<Value, AwsError> {
        let bucket = bucket_name(body)?;
        let name = index_name(body)?;
        self.with_index(body, |index| {
            let mut description = json!({
                "vectorBucketName": bucket,
                "indexName": name,
                "indexArn": format!("arn:aws:s3vectors:us-east-1:123456789012:bucket/{bucket}/index/{name}"),
                "creationTime": index.created,
                "dataType": "float32",
                "dimension": index.dimension,
                "distanceMetric": index.metric.name(),
                "indexMode": index.mode.name(),
            });
            if !index.non_filterable.is_empty() {
                description["metadataConfiguration"] =
                    json!({"nonFilterableMetadataKeys": index.non_filterable});
            }
            Ok(json!({"index": description}))
        })
    }

    /// Every index of a bucket in name order, in one page (the emulator
    /// never holds enough for a second).
    fn list_indexes(&self, body: &Value) -> Result<Value, AwsError> {
        let bucket = bucket_name(body)?;
        let buckets = self.buckets.lock().unwrap();
        let indexes = buckets
            .get(&bucket)
            .ok_or_else(|| AwsError::not_found(format!("vector bucket {bucket} does not exist")))?;
        let prefix = body.get("prefix").and_then(Value::as_str).unwrap_or("");
        let mut names: Vec<(&String, &Index)> = indexes
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        let listed: Vec<Value> = names
            .into_iter()
            .map(|(name, index)| {
                json!({
                    "vectorBucketName": bucket,
                    "indexName": name,
                    "indexArn": format!("arn:aws:s3vectors:us-east-1:123456789012:bucket/{bucket}/index/{name}"),
                    "creationTime": index.created,
                })
            })
            .collect();
        Ok(json!({"indexes": listed}))
    }

    fn delete_index(&self, body: &Value) -> Result<Value, AwsError> {
        let bucket = bucket_name(body)?;
        let name = index_name(body)?;
        let mut buckets = self.buckets.lock().unwrap();
        match buckets.get_mut(&bucket).and_then(|b| b.remove(&name)) {
            Some(_) => Ok(json!({})),
            None => Err(AwsError::not_found(format!("index {name} does not exist"))),
        }
    }

    fn put(&self, body: &Value) -> Result<Value, AwsError> {
        let items = body
            .get("vectors")
            .and_then(Value::as_array)
            .filter(|v| (1..=500).contains(&v.len()))
            .ok_or_else(|| AwsError::validation("vectors must hold 1 to 500 items"))?;
        self.with_index(body, |index| {
            let mut parsed = Vec::with_capacity(items.len());
            for item in items {
                let key = string(item, "key")?.to_string();
                let data = float32(item.get("data"))?;
                if data.len() != index.dimension {
                    return Err(AwsError::validation(format!(
                        "vector {key} has dimension {} but the index has {}",
                        data.len(),
                        index.dimension
                    )));
                }
                let metadata = item.get("metadata").cloned().unwrap_or(json!({}));
                if serde_json::to_vec(&metadata).map_or(0, |m| m.len()) > 40 * 1024 {
                    return Err(AwsError::validation("metadata is larger than 40 KB"));
                }
                parsed.push((key, (data, metadata)));
            }
            // All or nothing, as the service validates the batch first.
            index.vectors.extend(parsed);
            Ok(json!({}))
        })
    }

    fn get(&self, body: &Value) -> Result<Value, AwsError> {
        let keys = keys(body, 100)?;
        let return_data = body
            .get("returnData")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let return_metadata = flag(body, "returnMetadata");
        self.with_index(body, |index| {
            let vectors: Vec<Value> = keys
                .iter()
                .filter_map(|k| index.vectors.get(*k).map(|v| (k, v)))
                .map(|(key, (data, metadata))| {
                    output_vector(key, data, metadata, return_data, return_metadata)
                })
                .collect();
            Ok(json!({"vectors": vectors}))
        })
    }

    fn delete(&self, body: &Value) -> Result<Value, AwsError> {
        let keys = keys(body, 500)?;
        self.with_index(body, |index| {
            for key in keys {
                index.vectors.remove(key);
            }
            Ok(json!({}))
        })
    }

    fn list(&self, body: &Value) -> Result<Value, AwsError> {
        let max = body
            .get("maxResults")
            .and_then(Value::as_u64)
            .unwrap_or(500)
            .clamp(1, 1000) as usize;
        let after = body
            .get("nextToken")
            .and_then(Value::as_str)
            .map(String::from);
        let return_data = flag(body, "returnData");
        let return_metadata = flag(body, "returnMetadata");
        self.with_index(body, |index| {
            let range = match &after {
                Some(token) => index.vectors.range::<String, _>((
                    std::ops::Bound::Excluded(token),
                    std::ops::Bound::Unbounded,
                )),
                None => index.vectors.range::<String, _>(..),
            };
            let page: Vec<(&String, &(Vec<f32>, Value))> = range.take(max + 1).collect();
            let more = page.len() > max;
            let vectors: Vec<Value> = page
                .iter()
                .take(max)
                .map(|(key, (data, metadata))| {
                    output_vector(key, data, metadata, return_data, return_metadata)
                })
                .collect();
            let mut out = json!({"vectors": vectors});
            if more {
                out["nextToken"] = json!(page[max - 1].0);
            }
            Ok(out)
        })
    }

    fn query(&self, body: &Value) -> Result<Value, AwsError> {
        let top_k = body
            .get("topK")
            .and_then(Value::as_u64)
            .filter(|k| (1..=100).contains(k))
            .ok_or_else(|| AwsError::validation("topK must be between 1 and 100"))?
            as usize;
        let query = float32(body.get("queryVector"))?;
        let filter = body.get("filter").filter(|f| !f.is_null());
        let query_mode = Mode::parse(body.get("queryMode"))?;
        let return_metadata = flag(body, "returnMetadata");
        let return_distance = flag(body, "returnDistance");
        self.with_index(body, |index| {
            if query.len() != index.dimension {
                return Err(AwsError::validation(format!(
                    "the query vector has dimension {} but the index has {}",
                    query.len(),
                    index.dimension
                )));
            }
            let mode = match (index.mode, query_mode) {
                (Mode::Enhanced, Some(Mode::Classic)) => {
                    return Err(AwsError::validation(
                        "CLASSIC queries are not allowed on an ENHANCED index",
                    ));
                }
                (_, Some(mode)) => mode,
                (mode, None) => mode,
            };
            let mut scored: Vec<(f32, &String, &Value)> = index
                .vectors
                .iter()
                .map(|(key, (data, metadata))| (index.metric.distance(&query, data), key, metadata))
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
            if mode == Mode::Classic && filter.is_some() {
                scored.truncate(top_k * CLASSIC_CANDIDATES_PER_HIT);
            }
            if let Some(filter) = filter {
                let mut kept = Vec::with_capacity(scored.len());
                for candidate in scored {
                    let filterable = filterable_part(candidate.2, &index.non_filterable);
                    if filter::matches(filter, &filterable).map_err(AwsError::validation)? {
                        kept.push(candidate);
                    }
                }
                scored = kept;
            }
            let vectors: Vec<Value> = scored
                .into_iter()
                .take(top_k)
                .map(|(distance, key, metadata)| {
                    let mut v = json!({"key": key});
                    if return_distance {
                        v["distance"] = json!(distance);
                    }
                    if return_metadata {
                        v["metadata"] = metadata.clone();
                    }
                    v
                })
                .collect();
            Ok(json!({"vectors": vectors, "distanceMetric": index.metric.name()}))
        })
    }
}

fn flag(body: &Value, field: &str) -> bool {
    body.get(field).and_then(Value::as_bool).unwrap_or(false)
}

fn keys(body: &Value, max: usize) -> Result<Vec<&str>, AwsError> {
    let keys = body
        .get("keys")
        .and_then(Value::as_array)
        .filter(|k| (1..=max).contains(&k.len()))
        .ok_or_else(|| AwsError::validation(format!("keys must hold 1 to {max} items")))?;
    keys.iter()
        .map(|k| {
            k.as_str()
                .ok_or_else(|| AwsError::validation("keys must be strings"))
        })
        .collect()
}

/// Non-filterable keys are stored and returned but invisible to filters.
fn filterable_part(metadata: &Value, non_filterable: &[String]) -> Value {
    match metadata {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !non_filterable.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn output_vector(
    key: &str,
    data: &[f32],
    metadata: &Value,
    with_data: bool,
    with_metadata: bool,
) -> Value {
    let mut v = json!({"key": key});
    if with_data {
        v["data"] = json!({"float32": data});
    }
    if with_metadata {
        v["metadata"] = metadata.clone();
    }
    v
}
