//! Builds each kind of operator from its raw keys: which keys apply to which kind,
//! defaults, ranges, and the parsing of its expressions.

use std::collections::{BTreeMap, BTreeSet};

use super::validate::Place;

/// The most sliding windows one record may belong to.
const MAX_WINDOWS_PER_RECORD: i64 = 1_000;
use super::*;

/// Every key an operator may have beside `name`, `kind`, `input` and `inputs`, with the
/// kinds it applies to.
const KIND_KEYS: &[(&str, &[&str])] = &[
    ("filter", &["predicate"]),
    ("map", &["set", "rename", "drop", "key"]),
    ("flat_map", &["field", "separator"]),
    ("copier", &["outputs"]),
    ("splitter", &["branches", "default"]),
    ("sharder", &["key", "partitions"]),
    ("merger", &["capacity"]),
    ("join", &["block", "part", "parts", "timeout_ms"]),
    ("enrich", &["table", "key", "fields"]),
    (
        "predict",
        &[
            "model",
            "text_fields",
            "label_field",
            "score_field",
            "version_field",
            "runner",
        ],
    ),
    (
        "window",
        &[
            "key",
            "size_ms",
            "slide_ms",
            "allowed_lateness_ms",
            "aggregates",
            "sketch_alpha",
            "sketch_max_buckets",
        ],
    ),
];

/// Which keys of a raw operator are set.
fn present_keys(operator: &RawOperator) -> Vec<&'static str> {
    let keys = [
        ("predicate", operator.predicate.is_some()),
        ("set", operator.set.is_some()),
        ("rename", operator.rename.is_some()),
        ("drop", operator.drop.is_some()),
        ("key", operator.key.is_some()),
        ("field", operator.field.is_some()),
        ("separator", operator.separator.is_some()),
        ("outputs", operator.outputs.is_some()),
        ("branches", operator.branches.is_some()),
        ("default", operator.default.is_some()),
        ("partitions", operator.partitions.is_some()),
        ("capacity", operator.capacity.is_some()),
        ("block", operator.block.is_some()),
        ("part", operator.part.is_some()),
        ("parts", operator.parts.is_some()),
        ("timeout_ms", operator.timeout_ms.is_some()),
        ("table", operator.table.is_some()),
        ("fields", operator.fields.is_some()),
        ("size_ms", operator.size_ms.is_some()),
        ("slide_ms", operator.slide_ms.is_some()),
        (
            "allowed_lateness_ms",
            operator.allowed_lateness_ms.is_some(),
        ),
        ("aggregates", operator.aggregates.is_some()),
        ("sketch_alpha", operator.sketch_alpha.is_some()),
        ("sketch_max_buckets", operator.sketch_max_buckets.is_some()),
        ("model", operator.model.is_some()),
        ("text_fields", operator.text_fields.is_some()),
        ("label_field", operator.label_field.is_some()),
        ("score_field", operator.score_field.is_some()),
        ("version_field", operator.version_field.is_some()),
        ("runner", operator.runner.is_some()),
    ];
    keys.into_iter()
        .filter(|(_, present)| *present)
        .map(|(key, _)| key)
        .collect()
}

pub(super) fn build_kind(
    place: &Place,
    operator: &RawOperator,
    tables: &[TableSpec],
) -> Result<OperatorKind, SpecError> {
    let kind = operator.kind.as_str();
    let Some((_, allowed)) = KIND_KEYS.iter().find(|(name, _)| *name == kind) else {
        let kinds: Vec<&str> = KIND_KEYS.iter().map(|(name, _)| *name).collect();
        return Err(place.error(format!(
            "unknown kind `{kind}` (kinds: {})",
            kinds.join(", ")
        )));
    };
    for key in present_keys(operator) {
        if !allowed.contains(&key) {
            return Err(place.error(format!("key `{key}` does not apply to a `{kind}` operator")));
        }
    }
    let required = |key: &str, value: Option<&String>| -> Result<Expr, SpecError> {
        let source =
            value.ok_or_else(|| place.error(format!("a `{kind}` operator needs `{key}`")))?;
        parse_expr(place, key, source)
    };
    let optional = |key: &str, value: Option<&String>| {
        value
            .map(|source| parse_expr(place, key, source))
            .transpose()
    };
    let need = |key: &str| place.error(format!("a `{kind}` operator needs `{key}`"));
    Ok(match kind {
        "filter" => OperatorKind::Filter(required("predicate", operator.predicate.as_ref())?),
        "map" => {
            let mut set = BTreeMap::new();
            for (field, source) in operator.set.iter().flatten() {
                set.insert(
                    field.clone(),
                    parse_expr(place, &format!("set.{field}"), source)?,
                );
            }
            OperatorKind::Map(MapConfig {
                set,
                rename: operator.rename.clone().unwrap_or_default(),
                drop: operator.drop.clone().unwrap_or_default(),
                key: optional("key", operator.key.as_ref())?,
            })
        }
        "flat_map" => {
            let field = operator.field.clone().ok_or_else(|| need("field"))?;
            let separator = operator
                .separator
                .clone()
                .ok_or_else(|| need("separator"))?;
            if separator.is_empty() {
                return Err(place.error("`separator` must not be empty"));
            }
            OperatorKind::FlatMap { field, separator }
        }
        "copier" => {
            let outputs = operator.outputs.clone().ok_or_else(|| need("outputs"))?;
            check_port_names(place, &outputs)?;
            OperatorKind::Copier { outputs }
        }
        "splitter" => {
            let raw_branches = operator.branches.as_ref().ok_or_else(|| need("branches"))?;
            let default = operator.default.clone().unwrap_or_else(|| "default".into());
            let mut branches = Vec::new();
            for branch in raw_branches {
                let label = format!("branches.{}", branch.name);
                branches.push((
                    branch.name.clone(),
                    parse_expr(place, &label, &branch.when)?,
                ));
            }
            let mut names: Vec<String> = branches.iter().map(|(name, _)| name.clone()).collect();
            names.extend([default.clone(), "error".into()]);
            check_port_names(place, &names)?;
            OperatorKind::Splitter { branches, default }
        }
        "sharder" => {
            let partitions = operator.partitions.ok_or_else(|| need("partitions"))?;
            if partitions == 0 {
                return Err(place.error("`partitions` must be at least 1"));
            }
            OperatorKind::Sharder {
                key: required("key", operator.key.as_ref())?,
                partitions,
            }
        }
        "merger" => {
            let capacity = operator.capacity.unwrap_or(DEFAULT_MERGER_CAPACITY);
            if capacity == 0 {
                return Err(place.error("`capacity` must be at least 1"));
            }
            OperatorKind::Merger { capacity }
        }
        "join" => {
            let parts = operator.parts.ok_or_else(|| need("parts"))?;
            let timeout_ms = operator.timeout_ms.ok_or_else(|| need("timeout_ms"))?;
            if parts == 0 || timeout_ms < 0 {
                return Err(place.error("`parts` must be at least 1 and `timeout_ms` not negative"));
            }
            OperatorKind::Join(JoinConfig {
                block: required("block", operator.block.as_ref())?,
                part: required("part", operator.part.as_ref())?,
                parts,
                timeout_ms,
            })
        }
        "enrich" => {
            let table = operator.table.clone().ok_or_else(|| need("table"))?;
            let Some(table_spec) = tables.iter().find(|spec| spec.name == table) else {
                return Err(place.error(format!("unknown table `{table}`")));
            };
            let fields: Vec<(String, String)> = operator
                .fields
                .clone()
                .ok_or_else(|| need("fields"))?
                .into_iter()
                .collect();
            for (_, column) in &fields {
                if !table_spec.columns.iter().any(|spec| &spec.name == column) {
                    return Err(place.error(format!("table `{table}` has no column `{column}`")));
                }
            }
            OperatorKind::Enrich {
                table,
                key: required("key", operator.key.as_ref())?,
                fields,
            }
        }
        "predict" => OperatorKind::Predict(build_predict(place, operator)?),
        _ => OperatorKind::Window(build_window(place, operator)?),
    })
}

fn build_window(place: &Place, operator: &RawOperator) -> Result<WindowConfig, SpecError> {
    let size_ms = operator
        .size_ms
        .ok_or_else(|| place.error("a `window` operator needs `size_ms`"))?;
    let slide_ms = operator.slide_ms.unwrap_or(size_ms);
    let allowed_lateness_ms = operator.allowed_lateness_ms.unwrap_or(0);
    if size_ms <= 0 || slide_ms <= 0 || slide_ms > size_ms || allowed_lateness_ms < 0 {
        return Err(place.error("need 0 < `slide_ms` ≤ `size_ms` and `allowed_lateness_ms` ≥ 0"));
    }
    // Each record updates size / slide windows: bound the work one record can cause.
    if size_ms / slide_ms > MAX_WINDOWS_PER_RECORD {
        let message = format!("`size_ms` / `slide_ms` must be at most {MAX_WINDOWS_PER_RECORD}");
        return Err(place.error(message));
    }
    let sketch_alpha = operator.sketch_alpha.unwrap_or(DEFAULT_ALPHA);
    if !(0.0001..=0.5).contains(&sketch_alpha) {
        return Err(place.error("`sketch_alpha` must lie in [0.0001, 0.5]"));
    }
    let mut aggregates = Vec::new();
    for raw in operator.aggregates.iter().flatten() {
        let function = match (raw.function.as_str(), raw.q) {
            ("count", None) => AggregateFunction::Count,
            ("sum", None) => AggregateFunction::Sum,
            ("min", None) => AggregateFunction::Min,
            ("max", None) => AggregateFunction::Max,
            ("mean", None) => AggregateFunction::Mean,
            ("quantile", Some(q)) if (0.0..=1.0).contains(&q) => AggregateFunction::Quantile { q },
            (function, _) => {
                let message = format!(
                    "aggregate `{}`: `{function}` with q {:?} is not one of count, sum, min, max, mean, quantile (with q in [0, 1])",
                    raw.name, raw.q
                );
                return Err(place.error(message));
            }
        };
        let needs_field = function != AggregateFunction::Count;
        if needs_field != raw.field.is_some() {
            return Err(place.error(format!(
                "aggregate `{}`: `field` is required by all functions but count",
                raw.name
            )));
        }
        aggregates.push(AggregateSpec {
            name: raw.name.clone(),
            function,
            field: raw.field.clone(),
        });
    }
    let key = operator
        .key
        .as_ref()
        .map(|source| parse_expr(place, "key", source))
        .transpose()?;
    let config = WindowConfig {
        key,
        size_ms,
        slide_ms,
        allowed_lateness_ms,
        aggregates,
        sketch_alpha,
        sketch_max_buckets: operator.sketch_max_buckets.unwrap_or(DEFAULT_MAX_BUCKETS),
    };
    let mut names = BTreeSet::new();
    for name in Window::output_fields(&config) {
        if !names.insert(name.clone()) {
            return Err(place.error(format!("output field `{name}` is produced twice")));
        }
    }
    Ok(config)
}

fn build_predict(place: &Place, operator: &RawOperator) -> Result<PredictConfig, SpecError> {
    let need = |key: &str| place.error(format!("a `predict` operator needs `{key}`"));
    let model = operator.model.clone().ok_or_else(|| need("model"))?;
    // The runtime resolves the reference; its syntax is checked here, before any I/O.
    let well_formed = model
        .split_once('@')
        .is_some_and(|(name, version)| !name.is_empty() && !version.is_empty());
    if !well_formed {
        return Err(place.error(format!(
            "`model` `{model}` must be NAME@ALIAS or NAME@VERSION"
        )));
    }
    let text_fields = operator
        .text_fields
        .clone()
        .ok_or_else(|| need("text_fields"))?;
    if text_fields.is_empty() {
        return Err(place.error("`text_fields` must name at least one field"));
    }
    let runner = operator.runner.clone();
    if let Some(url) = &runner {
        let has_host = ["http://", "https://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme))
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if !has_host {
            return Err(place.error(format!(
                "`runner` `{url}` must be an http:// or https:// URL of a model runner"
            )));
        }
    }
    let config = PredictConfig {
        model,
        runner,
        text_fields,
        label_field: operator
            .label_field
            .clone()
            .ok_or_else(|| need("label_field"))?,
        score_field: operator.score_field.clone(),
        version_field: operator.version_field.clone(),
    };
    let mut names = BTreeSet::new();
    for name in config.output_fields() {
        if name.is_empty() || !names.insert(name.clone()) {
            return Err(place.error(format!("output field `{name}` is empty or named twice")));
        }
    }
    Ok(config)
}

fn parse_expr(place: &Place, key: &str, source: &str) -> Result<Expr, SpecError> {
    Expr::parse(source).map_err(|error| place.error(format!("`{key}`: {error}")))
}

fn check_port_names(place: &Place, names: &[String]) -> Result<(), SpecError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if name.is_empty() || name.contains('.') || !seen.insert(name) {
            return Err(place.error(format!(
                "output `{name}` is empty, contains `.`, or is named twice"
            )));
        }
    }
    Ok(())
}
