//! Turns a [`RawSpec`] into a [`PipelineSpec`], or says what is wrong and where.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::kinds::build_kind;
use super::*;
use crate::ops::ERROR_FIELD;

/// Errors about one named part of the spec.
pub(super) struct Place {
    pub(super) what: String,
    pub(super) line: Option<usize>,
}

impl Place {
    pub(super) fn error(&self, message: impl Into<String>) -> SpecError {
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
    let sources = validate_sources(raw.source, text, &mut stream_names)?;
    let tables = validate_tables(raw.table, text)?;
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
    let streams = Streams {
        sources: sources.iter().map(|source| source.name.clone()).collect(),
        ports: pending
            .iter()
            .map(|(_, name, _, kind)| (name.clone(), kind.port_names()))
            .collect(),
    };
    let mut resolved = Vec::new();
    for (place, name, inputs, kind) in pending {
        let mut refs = Vec::new();
        for input in &inputs {
            refs.push(streams.resolve(&place, input)?);
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
    let operators = track_fields(&sources, topological_order(resolved)?)?;
    let mut sinks = Vec::new();
    for sink in raw.sink {
        let name = sink.name.get_ref().clone();
        let place = Place {
            what: format!("sink `{name}`"),
            line: line_of(text, sink.name.span()),
        };
        check_name(&place, &name, &mut stream_names)?;
        let input = streams.resolve(&place, &sink.input)?;
        sinks.push(SinkSpec {
            name,
            input,
            connector: sink.connector,
        });
    }
    Ok(PipelineSpec {
        sources,
        tables,
        operators,
        sinks,
    })
}

/// Checks a name and claims it among `names`.
fn check_name(place: &Place, name: &str, names: &mut BTreeSet<String>) -> Result<(), SpecError> {
    let well_formed = !name.is_empty() && !name.contains('.');
    if !well_formed {
        return Err(place.error("a name must be non-empty and contain no `.`"));
    }
    if !names.insert(name.to_owned()) {
        return Err(place.error("this name is already used"));
    }
    Ok(())
}

fn validate_sources(
    raw: Vec<RawSource>,
    text: Option<&str>,
    stream_names: &mut BTreeSet<String>,
) -> Result<Vec<SourceSpec>, SpecError> {
    let mut sources = Vec::new();
    for source in raw {
        let name = source.name.get_ref().clone();
        let place = Place {
            what: format!("source `{name}`"),
            line: line_of(text, source.name.span()),
        };
        check_name(&place, &name, stream_names)?;
        let schema = Schema::new(
            source.columns,
            source.id.as_deref(),
            &source.time,
            source.key.as_deref(),
        )
        .map_err(|error| place.error(error.to_string()))?
        .with_format(source.format);
        if source.header && source.format == RecordFormat::Jsonl {
            return Err(place.error("`header` applies to CSV sources, not to `jsonl` ones"));
        }
        if source.out_of_orderness_ms < 0 {
            return Err(place.error("`out_of_orderness_ms` must not be negative"));
        }
        sources.push(SourceSpec {
            name,
            schema,
            header: source.header,
            out_of_orderness_ms: source.out_of_orderness_ms,
            connector: source.connector,
        });
    }
    Ok(sources)
}

fn validate_tables(raw: Vec<RawTable>, text: Option<&str>) -> Result<Vec<TableSpec>, SpecError> {
    let mut tables = Vec::new();
    let mut table_names = BTreeSet::new();
    for table in raw {
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
            path: table.path,
            columns: table.columns,
            key: table.key,
            header: table.header,
        });
    }
    Ok(tables)
}

/// The streams inputs may name: every source's, and every operator's ports.
struct Streams {
    sources: BTreeSet<String>,
    ports: BTreeMap<String, Vec<String>>,
}

impl Streams {
    /// Resolves `node` or `node.port`.
    fn resolve(&self, place: &Place, text: &str) -> Result<StreamRef, SpecError> {
        let (node, port) = text.split_once('.').unwrap_or((text, "out"));
        if self.sources.contains(node) {
            if port != "out" {
                return Err(place.error(format!("source `{node}` has no output `{port}`")));
            }
            return Ok(StreamRef {
                node: node.to_owned(),
                port: 0,
            });
        }
        let Some(ports) = self.ports.get(node) else {
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
    }
}

/// Checks, in topological order, that every operator reads only fields its inputs may
/// carry (from the schemas through every operator), and gives each its line.
fn track_fields(
    sources: &[SourceSpec],
    ordered: Vec<(Place, OperatorSpec)>,
) -> Result<Vec<OperatorSpec>, SpecError> {
    let mut known: BTreeMap<StreamRef, BTreeSet<String>> = BTreeMap::new();
    for source in sources {
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
    Ok(operators)
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
        OperatorKind::Predict(config) => {
            fields.extend(config.text_fields.iter().map(String::as_str))
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
        (OperatorKind::Predict(config), "out") => fields.extend(config.output_fields()),
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
