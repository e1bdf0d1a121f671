//! The Open Inference Protocol v2 (KServe, Triton, Seldon) as JSON: the request and
//! answer bodies of `POST /v2/models/{name}/infer`, the model metadata, and the one
//! place where a request is checked and turned into the texts a model scores.
//!
//! Parsing is kept free of I/O and of the model, so that every refusal (a malformed
//! body, a wrong shape or datatype) is decided, tested and worded here; the HTTP layer
//! only maps [`InferError::status`] to a status code.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The one input a text classifier takes, as its metadata names it.
pub const INPUT_NAME: &str = "text";
/// The output holding the predicted label of every row.
pub const LABEL_OUTPUT: &str = "label";
/// The output holding the probability of every class of every row.
pub const SCORES_OUTPUT: &str = "scores";
/// The request parameter that makes the A/B split sticky (same key, same arm).
pub const KEY_PARAMETER: &str = "key";
/// Most rows one request may carry: a request is one item of a batch, and a batch's
/// memory is bounded by the queue's length times this.
pub const MAX_ROWS: usize = 1024;

/// Why an inference request is not answered; [`InferError::status`] gives its HTTP code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferError {
    /// The body is not an OIP request, or its input is not what the model takes.
    #[error("{0}")]
    BadRequest(String),
    /// No model of that name is served here.
    #[error("model `{0}` is not served here")]
    UnknownModel(String),
    /// The model is served but no version is loaded yet.
    #[error("model `{0}` is not loaded yet")]
    NotReady(String),
    /// The version's queue is full: the caller should retry later.
    #[error("model `{model}` version {version}: the queue is full, retry later")]
    QueueFull {
        /// The served model.
        model: String,
        /// The version whose queue is full.
        version: u64,
    },
    /// The version failed to score the batch (a bug: the scorer panicked).
    #[error("model `{model}` version {version} failed to score the request")]
    Failed {
        /// The served model.
        model: String,
        /// The version that failed.
        version: u64,
    },
}

impl InferError {
    /// Returns the HTTP status of this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::UnknownModel(_) => 404,
            Self::QueueFull { .. } => 429,
            Self::NotReady(_) => 503,
            Self::Failed { .. } => 500,
        }
    }

    /// Tells whether the runner (not the caller) is at fault: what a canary counts as
    /// an error of its candidate.
    pub fn is_server_fault(&self) -> bool {
        matches!(self, Self::QueueFull { .. } | Self::Failed { .. })
    }

    /// Returns the bounded word this refusal is counted under.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::UnknownModel(_) => "unknown_model",
            Self::NotReady(_) => "not_ready",
            Self::QueueFull { .. } => "queue_full",
            Self::Failed { .. } => "failed",
        }
    }
}

/// One tensor of a request.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestInput {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its datatype (`BYTES` for text).
    pub datatype: String,
    /// Its elements, flat or nested in row-major order.
    pub data: Value,
    /// Its parameters (unused).
    #[serde(default)]
    pub parameters: Option<BTreeMap<String, Value>>,
}

/// The body of `POST /v2/models/{name}/infer`.
#[derive(Debug, Clone, Deserialize)]
pub struct InferRequest {
    /// An identifier echoed in the answer.
    #[serde(default)]
    pub id: Option<String>,
    /// Request parameters; `key` makes the A/B split sticky.
    #[serde(default)]
    pub parameters: Option<BTreeMap<String, Value>>,
    /// The tensors: exactly one for a text classifier.
    pub inputs: Vec<RequestInput>,
    /// Outputs asked for (all are returned; accepted for compatibility).
    #[serde(default)]
    pub outputs: Option<Value>,
}

/// A request checked: what the runner needs from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// The request's id, echoed.
    pub id: Option<String>,
    /// The sticky key, if the request gave one.
    pub key: Option<String>,
    /// One text per row.
    pub texts: Vec<String>,
}

/// Parses and checks a request body.
pub fn parse_request(body: &[u8]) -> Result<Rows, InferError> {
    let request: InferRequest = serde_json::from_slice(body)
        .map_err(|error| InferError::BadRequest(format!("malformed inference request: {error}")))?;
    let [input] = &request.inputs[..] else {
        return Err(InferError::BadRequest(format!(
            "expected exactly one input (`{INPUT_NAME}`, BYTES), got {}",
            request.inputs.len()
        )));
    };
    if input.datatype != "BYTES" {
        return Err(InferError::BadRequest(format!(
            "input `{}`: datatype {} where BYTES (text) is expected",
            input.name, input.datatype
        )));
    }
    let texts = flatten_strings(&input.data, &input.name)?;
    check_shape(&input.shape, texts.len(), &input.name)?;
    let key = match request
        .parameters
        .as_ref()
        .and_then(|p| p.get(KEY_PARAMETER))
    {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => Some(key.clone()),
        Some(Value::Number(key)) => Some(key.to_string()),
        Some(other) => {
            return Err(InferError::BadRequest(format!(
                "parameter `{KEY_PARAMETER}` must be a string or a number, not {other}"
            )));
        }
    };
    Ok(Rows {
        id: request.id,
        key,
        texts,
    })
}

/// Collects the strings of a flat or nested array, in row-major order.
fn flatten_strings(data: &Value, input: &str) -> Result<Vec<String>, InferError> {
    let mut texts = Vec::new();
    let mut stack = vec![data];
    // Depth-first, children pushed in reverse so that they come out in order.
    while let Some(value) = stack.pop() {
        match value {
            Value::String(text) => texts.push(text.clone()),
            Value::Array(items) => stack.extend(items.iter().rev()),
            other => {
                return Err(InferError::BadRequest(format!(
                    "input `{input}`: BYTES elements must be strings, found {other}"
                )));
            }
        }
        if texts.len() > MAX_ROWS {
            return Err(InferError::BadRequest(format!(
                "input `{input}`: more than {MAX_ROWS} rows in one request"
            )));
        }
    }
    Ok(texts)
}

/// Checks that `shape` is `[N]` or `[N, 1]` with N the number of texts.
fn check_shape(shape: &[i64], rows: usize, input: &str) -> Result<(), InferError> {
    let fits = match shape {
        [n] | [n, 1] => usize::try_from(*n).is_ok_and(|n| n == rows),
        _ => false,
    };
    if fits && rows > 0 {
        return Ok(());
    }
    Err(InferError::BadRequest(format!(
        "input `{input}`: shape {shape:?} does not fit {rows} text(s); expected [{rows}] or [{rows}, 1] with at least one row"
    )))
}

/// One tensor of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutput {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its datatype.
    pub datatype: String,
    /// Its elements, flat, row-major.
    pub data: Value,
    /// Its parameters (`classes`: the order of the scores' columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, Value>>,
}

/// The answer of `POST /v2/models/{name}/infer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferResponse {
    /// The served model.
    pub model_name: String,
    /// The version that answered.
    pub model_version: String,
    /// The request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `label` (BYTES, one per row) and `scores` (FP64, rows × classes).
    pub outputs: Vec<ResponseOutput>,
}

/// Builds the answer from the predicted class and the probabilities of every row.
pub fn response(
    model_name: &str,
    version: u64,
    id: Option<String>,
    classes: &[String],
    predictions: &[(usize, Vec<f64>)],
) -> InferResponse {
    let labels: Vec<Value> = predictions
        .iter()
        .map(|(class, _)| Value::String(classes[*class].clone()))
        .collect();
    let scores: Vec<Value> = predictions
        .iter()
        .flat_map(|(_, probabilities)| probabilities.iter().map(|p| Value::from(*p)))
        .collect();
    let class_names = classes.iter().cloned().map(Value::String).collect();
    InferResponse {
        model_name: model_name.to_string(),
        model_version: version.to_string(),
        id,
        outputs: vec![
            ResponseOutput {
                name: LABEL_OUTPUT.into(),
                shape: vec![predictions.len()],
                datatype: "BYTES".into(),
                data: Value::Array(labels),
                parameters: None,
            },
            ResponseOutput {
                name: SCORES_OUTPUT.into(),
                shape: vec![predictions.len(), classes.len()],
                datatype: "FP64".into(),
                data: Value::Array(scores),
                parameters: Some(BTreeMap::from([(
                    "classes".to_string(),
                    Value::Array(class_names),
                )])),
            },
        ],
    }
}

/// Describes one tensor in the model metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorMetadata {
    /// Its name.
    pub name: String,
    /// Its datatype.
    pub datatype: String,
    /// Its shape (-1: any length).
    pub shape: Vec<i64>,
}

/// The answer of `GET /v2/models/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// The served model.
    pub name: String,
    /// The versions loaded (the primary's first).
    pub versions: Vec<String>,
    /// What runs it.
    pub platform: String,
    /// The input it takes.
    pub inputs: Vec<TensorMetadata>,
    /// The outputs it gives.
    pub outputs: Vec<TensorMetadata>,
}

/// Returns the metadata of a text classifier with `classes` loaded at `versions`.
pub fn metadata(name: &str, versions: Vec<String>, classes: usize) -> ModelMetadata {
    let tensor = |name: &str, datatype: &str, shape: Vec<i64>| TensorMetadata {
        name: name.into(),
        datatype: datatype.into(),
        shape,
    };
    ModelMetadata {
        name: name.to_string(),
        versions,
        platform: "essaim-naive-bayes".into(),
        inputs: vec![tensor(INPUT_NAME, "BYTES", vec![-1])],
        outputs: vec![
            tensor(LABEL_OUTPUT, "BYTES", vec![-1]),
            tensor(SCORES_OUTPUT, "FP64", vec![-1, classes as i64]),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Rows, InferError> {
        parse_request(body.as_bytes())
    }

    #[test]
    fn a_request_of_texts_gives_its_rows_and_key() {
        let rows = parse(
            r#"{"id":"r1","parameters":{"key":"user-7"},
                "inputs":[{"name":"text","shape":[2],"datatype":"BYTES","data":["win money","hello"]}]}"#,
        )
        .unwrap();
        assert_eq!(rows.id.as_deref(), Some("r1"));
        assert_eq!(rows.key.as_deref(), Some("user-7"));
        assert_eq!(rows.texts, ["win money", "hello"]);
        let nested = parse(
            r#"{"parameters":{"key":42},"inputs":[{"name":"x","shape":[2,1],"datatype":"BYTES","data":[["a"],["b"]]}]}"#,
        )
        .unwrap();
        assert_eq!(
            (nested.key.as_deref(), nested.texts),
            (Some("42"), vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn malformed_bodies_wrong_shapes_and_datatypes_are_refused_with_400() {
        let refusals = [
            ("not json", "malformed"),
            (r#"{"inputs":[]}"#, "exactly one input"),
            (
                r#"{"inputs":[{"name":"text","shape":[3],"datatype":"BYTES","data":["a","b"]}]}"#,
                "shape [3] does not fit 2",
            ),
            (
                r#"{"inputs":[{"name":"text","shape":[1,2],"datatype":"BYTES","data":["a","b"]}]}"#,
                "shape [1, 2]",
            ),
            (
                r#"{"inputs":[{"name":"text","shape":[0],"datatype":"BYTES","data":[]}]}"#,
                "at least one row",
            ),
            (
                r#"{"inputs":[{"name":"text","shape":[1],"datatype":"FP32","data":[1.0]}]}"#,
                "datatype FP32",
            ),
            (
                r#"{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":[1]}]}"#,
                "must be strings",
            ),
            (
                r#"{"parameters":{"key":[1]},"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["a"]}]}"#,
                "parameter `key`",
            ),
        ];
        for (body, fragment) in refusals {
            let error = parse(body).expect_err(body);
            assert_eq!(error.status(), 400, "{body}");
            assert!(error.to_string().contains(fragment), "{body}: {error}");
        }
    }

    #[test]
    fn too_many_rows_are_refused_before_they_are_all_copied() {
        let data = vec!["a"; MAX_ROWS + 1];
        let body = serde_json::json!({"inputs":[{"name":"text","shape":[MAX_ROWS + 1],"datatype":"BYTES","data":data}]});
        let error = parse(&body.to_string()).unwrap_err();
        assert!(error.to_string().contains("more than 1024 rows"), "{error}");
    }

    #[test]
    fn the_answer_has_one_label_and_one_row_of_scores_per_text() {
        let classes = ["ham".to_string(), "spam".to_string()];
        let answer = response(
            "spam-filter",
            3,
            Some("r1".into()),
            &classes,
            &[(1, vec![0.1, 0.9]), (0, vec![0.8, 0.2])],
        );
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["model_version"], "3");
        assert_eq!(
            json["outputs"][0]["data"],
            serde_json::json!(["spam", "ham"])
        );
        assert_eq!(json["outputs"][1]["shape"], serde_json::json!([2, 2]));
        assert_eq!(
            json["outputs"][1]["data"],
            serde_json::json!([0.1, 0.9, 0.8, 0.2])
        );
        assert_eq!(
            json["outputs"][1]["parameters"]["classes"],
            serde_json::json!(["ham", "spam"])
        );
    }
}
