//! Turns a [`RawSpec`] into a [`PipelineSpec`], or says what is wrong and where.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::*;
use crate::ops::ERROR_FIELD;

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

/// Errors about one named part of the spec.
struct Place {
    what: String,
    line: Option<usize>,
}

impl Place {
    fn error(&self, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            what: self.what.clone(),
            line: self.line,
            message: message.into(),
        }
    }
}

fn line_of(text: Option<&str>, span: Range<usize>) -> Option<usize> {
    let text = text?;
    let before = text.get(..span.start)?;
    Some(before.matches('\n').count() + 1)
}

pub(super) fn validate(raw: RawSpec, text: Option<&str>) -> Result<PipelineSpec, SpecError> {
    if raw.version != SPEC_VERSION {
        let place = Place {
            what: "spec".into(),
            line: None,
        };
        return Err(place.error(format!(
            "version {} is not supported (expected {SPEC_VERSION})",
            raw.version
        )));
    }
    let mut stream_names = BTreeSet::new();
    let check_name = |place: &Place, name: &str, names: &mut BTreeSet<String>| {
        let well_formed = !name.is_empty() && !name.contains('.');
        if !well_formed {
            return Err(place.error("a name must be non-empty and contain no `.`"));
        }
        if !names.insert(name.to_owned()) {
            return Err(place.error("this name is already used"));
        }
        Ok(())
    };

    let mut sources = Vec::new();
    for source in raw.source {
        let name = source.name.get_ref().clone();
        let place = Place {
            what: format!("source `{name}`"),
            line: line_of(text, source.name.span()),
        };
        check_name(&place, &name, &mut stream_names)?;
        let schema = Schema::new(
            source.columns,
            source.id.as_deref(),
            &source.time,
            source.key.as_deref(),
        )
        .map_err(|error| place.error(error.to_string()))?;
        if source.out_of_orderness_ms < 0 {
            return Err(place.error("`out_of_orderness_ms` must not be negative"));
        }
        sources.push(SourceSpec {
            name,
            schema,
            header: source.header,
            out_of_orderness_ms: source.out_of_orderness_ms,
        });
    }

    let mut tables = Vec::new();
    let mut table_names = BTreeSet::new();
    for table in raw.table {
        let name = table.name.get_ref().clone();
        let place = Place {
            what: format!("table `{name}`"),
            line: line_of(text, table.name.span()),
        };
        check_name(&place, &name, &mut table_names)?;
        if !table.columns.iter().any(|column| column.name == table.key) {
            return Err(place.error(format!(
                "key column `{}` is not one of its columns",
                table.key
            )));
        }
        tables.push(TableSpec {
            name,
            columns: table.columns,
            key: table.key,
            header: table.header,
        });
    }

    // Operators: kinds and expressions first, inputs once every name is known.
    let mut pending = Vec::new();
    for operator in raw.operator {
        let name = operator.name.get_ref().clone();
        let place = Place {
            what: format!("operator `{name}`"),
            line: line_of(text, operator.name.span()),
        };
        check_name(&place, &name, &mut stream_names)?;
        let inputs = match (&operator.input, &operator.inputs) {
            (Some(input), None) => vec![input.clone()],
            (None, Some(inputs)) if !inputs.is_empty() => inputs.clone(),
            _ => return Err(place.error("give exactly one of `input` or a non-empty `inputs`")),
        };
        let kind = build_kind(&place, &operator, &tables)?;
        pending.push((place, name, inputs, kind));
    }
    let port_names: BTreeMap<String, Vec<String>> = pending
        .iter()
        .map(|(_, name, _, kind)| (name.clone(), kind.port_names()))
        .collect();
    let source_names: BTreeSet<&str> = sources.iter().map(|source| source.name.as_str()).collect();
    let resolve = |place: &Place, text: &str| -> Result<StreamRef, SpecError> {
        let (node, port) = text.split_once('.').unwrap_or((text, "out"));
        if source_names.contains(node) {
            if port != "out" {
                return Err(place.error(format!("source `{node}` has no output `{port}`")));
            }
            return Ok(StreamRef {
                node: node.to_owned(),
                port: 0,
            });
        }
        let Some(ports) = port_names.get(node) else {
            return Err(place.error(format!("unknown input `{node}`")));
        };
        // A copier or splitter's first output is its main output: `out` names it too.
        let index = ports
            .iter()
            .position(|name| name == port)
            .or((port == "out").then_some(0));
        let Some(index) = index else {
            return Err(place.error(format!(
                "operator `{node}` has no output `{port}` (it has: {})",
                ports.join(", ")
            )));
        };
        Ok(StreamRef {
            node: node.to_owned(),
            port: index,
        })
    };
    let mut resolved = Vec::new();
    for (place, name, inputs, kind) in pending {
        let mut refs = Vec::new();
        for input in &inputs {
            refs.push(resolve(&place, input)?);
        }
        resolved.push((
            place,
            OperatorSpec {
                name,
                line: None,
                inputs: refs,
                kind,
            },
        ));
    }

    let ordered = topological_order(resolved)?;

    // Fields: what each stream may carry, from the schemas through every operator.
    let mut known: BTreeMap<StreamRef, BTreeSet<String>> = BTreeMap::new();
    for source in &sources {
        let fields = source
            .schema
            .columns()
            .iter()
            .map(|column| column.name.clone())
            .collect();
        known.insert(
            StreamRef {
                node: source.name.clone(),
                port: 0,
            },
            fields,
        );
    }
    let mut operators = Vec::new();
    for (place, mut operator) in ordered {
        let mut input_fields = BTreeSet::new();
        for input in &operator.inputs {
            input_fields.extend(known.get(input).into_iter().flatten().cloned());
        }
        check_fields(&place, &operator.kind, &input_fields)?;
        for (port, port_name) in operator.kind.port_names().iter().enumerate() {
            let fields = output_fields(&operator.kind, port_name, &input_fields);
            known.insert(
                StreamRef {
                    node: operator.name.clone(),
                    port,
                },
                fields,
            );
        }
        operator.line = place.line;
        operators.push(operator);
    }

    let mut sinks = Vec::new();
    for sink in raw.sink {
        let name = sink.name.get_ref().clone();
        let place = Place {
            what: format!("sink `{name}`"),
            line: line_of(text, sink.name.span()),
        };
        check_name(&place, &name, &mut stream_names)?;
        let input = resolve(&place, &sink.input)?;
        sinks.push(SinkSpec { name, input });
    }
    Ok(PipelineSpec {
        sources,
        tables,
        operators,
        sinks,
    })
}

/// Orders operators so that each comes after the operators it reads (Kahn's algorithm,
/// ties broken by spec order); an operator left over is on a cycle.
fn topological_order(
    operators: Vec<(Place, OperatorSpec)>,
) -> Result<Vec<(Place, OperatorSpec)>, SpecError> {
    let names: BTreeSet<String> = operators
        .iter()
        .map(|(_, operator)| operator.name.clone())
        .collect();
    let mut remaining = operators;
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut ordered = Vec::new();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|(_, operator)| {
            operator
                .inputs
                .iter()
                .all(|input| !names.contains(&input.node) || placed.contains(&input.node))
        });
        let Some(ready) = ready else {
            let (place, _) = &remaining[0];
            return Err(place.error("this operator is part of a cycle"));
        };
        let (place, operator) = remaining.remove(ready);
        placed.insert(operator.name.clone());
        ordered.push((place, operator));
    }
    Ok(ordered)
}

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
    ];
    keys.into_iter()
        .filter(|(_, present)| *present)
        .map(|(key, _)| key)
        .collect()
}

fn build_kind(
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

/// Checks that every field the operator reads can be carried by its inputs.
fn check_fields(
    place: &Place,
    kind: &OperatorKind,
    input: &BTreeSet<String>,
) -> Result<(), SpecError> {
    let mut expressions: Vec<(String, &Expr)> = Vec::new();
    let mut fields: Vec<&str> = Vec::new();
    match kind {
        OperatorKind::Filter(predicate) => expressions.push(("predicate".into(), predicate)),
        OperatorKind::Map(config) => {
            expressions.extend(
                config
                    .set
                    .iter()
                    .map(|(field, expr)| (format!("set.{field}"), expr)),
            );
            expressions.extend(config.key.iter().map(|expr| ("key".into(), expr)));
            fields.extend(config.rename.keys().map(String::as_str));
            fields.extend(config.drop.iter().map(String::as_str));
        }
        OperatorKind::FlatMap { field, .. } => fields.push(field),
        OperatorKind::Splitter { branches, .. } => {
            expressions.extend(
                branches
                    .iter()
                    .map(|(name, expr)| (format!("branches.{name}"), expr)),
            );
        }
        OperatorKind::Sharder { key, .. } | OperatorKind::Enrich { key, .. } => {
            expressions.push(("key".into(), key))
        }
        OperatorKind::Join(config) => {
            expressions.push(("block".into(), &config.block));
            expressions.push(("part".into(), &config.part));
        }
        OperatorKind::Window(config) => {
            expressions.extend(config.key.iter().map(|expr| ("key".into(), expr)));
            fields.extend(
                config
                    .aggregates
                    .iter()
                    .filter_map(|aggregate| aggregate.field.as_deref()),
            );
        }
        OperatorKind::Copier { .. } | OperatorKind::Merger { .. } => {}
    }
    for (label, expr) in expressions {
        for field in expr.fields() {
            if !input.contains(field) {
                return Err(place.error(format!(
                    "`{label}` reads field `{field}`, which no input carries"
                )));
            }
        }
    }
    for field in fields {
        if !input.contains(field) {
            return Err(place.error(format!("field `{field}` is not carried by any input")));
        }
    }
    Ok(())
}

/// The fields a record leaving by `port` may carry.
fn output_fields(kind: &OperatorKind, port: &str, input: &BTreeSet<String>) -> BTreeSet<String> {
    let mut fields = input.clone();
    let is_error_port = port == "error" && !matches!(kind, OperatorKind::Copier { .. });
    if is_error_port {
        fields.insert(ERROR_FIELD.to_owned());
        return fields;
    }
    match (kind, port) {
        (OperatorKind::Map(config), _) => {
            fields.extend(config.set.keys().cloned());
            for (old_name, new_name) in &config.rename {
                if fields.remove(old_name) {
                    fields.insert(new_name.clone());
                }
            }
            for name in &config.drop {
                fields.remove(name);
            }
        }
        (OperatorKind::Enrich { fields: added, .. }, "out") => {
            fields.extend(added.iter().map(|(field, _)| field.clone()));
        }
        (OperatorKind::Join(config), "out" | "incomplete") => {
            fields = ["block", "parts"].map(String::from).into();
            for index in 0..config.parts {
                fields.extend(input.iter().map(|name| format!("p{index}_{name}")));
            }
        }
        (OperatorKind::Window(config), "out") => {
            fields = Window::output_fields(config).into_iter().collect()
        }
        _ => {}
    }
    fields
}
