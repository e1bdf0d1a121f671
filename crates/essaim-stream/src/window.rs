//! Windowed reduce on event time: per-key aggregates over tumbling or sliding windows,
//! fired by watermarks, with allowed lateness.
//!
//! Windows are aligned on the epoch: a window of `size_ms` starts at every multiple of
//! `slide_ms` (tumbling when `slide_ms == size_ms`) and covers `[start, start + size)`. A
//! record belongs to every window that covers its event time, separately for each key.
//!
//! Rules, in terms of the watermark `W` this operator was last given (the pipeline
//! computes it as the max event time seen by the sources minus their bounded
//! out-of-orderness, and the minimum over inputs):
//! - a window **fires** once, when `W ≥ end`: its result leaves with `revision = 0` and
//!   `kind = "final"`;
//! - its state is kept until `W ≥ end + allowed_lateness_ms`, then **purged**;
//! - a record for a fired window that is not yet purged is **late but allowed**: it
//!   updates the window, which is emitted again at once with the next revision and
//!   `kind = "update"` (sinks upsert by the result's id, which is the same for every
//!   revision of a window);
//! - a record all of whose windows are purged is **too late**: it leaves by the `late`
//!   port (counted, never dropped silently). A record of a sliding window too late for
//!   some of its windows only updates the others and is counted in
//!   [`WindowState::partially_late`].
//!
//! Aggregates: `count` (records), and over a numeric field `sum`, `min`, `max`, `mean` and
//! `quantile` (a [`DdSketch`] of relative accuracy α). Nulls are skipped by the field
//! aggregates (an aggregate of no values is null); a string or bool where a number is
//! expected sends the record to `error`.
//!
//! A result record has the id `derive_id(fnv1a_64(key), "window", start)`, the event
//! time `end − 1`, the window's key, and fields `key`, `window_start`, `window_end`,
//! `revision`, `kind`, `records` and one per aggregate.
//!
//! Memory: one accumulator per aggregate per open window; the open windows per key are
//! at most `(size + out-of-orderness + allowed lateness) / slide + 1`, and a sketch holds
//! at most twice its bucket limit.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::expr::Expr;
use crate::hash::{derive_id, fnv1a_64, partition_of};
use crate::ops::{Emitted, KeyedState, Port, with_error};
use crate::record::{EventTime, Record, RecordId, Value};
use crate::sketch::DdSketch;

/// An aggregate function.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateFunction {
    /// Records in the window.
    Count,
    /// Sum of a field.
    Sum,
    /// Minimum of a field.
    Min,
    /// Maximum of a field.
    Max,
    /// Mean of a field.
    Mean,
    /// Estimated quantile `q` of a field (relative error ≤ the sketch's α).
    Quantile {
        /// In `[0, 1]`.
        q: f64,
    },
}

/// One output column of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateSpec {
    /// The output field name.
    pub name: String,
    /// The function.
    pub function: AggregateFunction,
    /// The input field (absent for `count`).
    pub field: Option<String>,
}

/// A validated window configuration.
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// The key expression; when absent the record's own key is used.
    pub key: Option<Expr>,
    /// Window length in event time (> 0).
    pub size_ms: i64,
    /// Distance between window starts (> 0, at most `size_ms`).
    pub slide_ms: i64,
    /// How long after firing a window still takes late records (≥ 0).
    pub allowed_lateness_ms: i64,
    /// The aggregates, in output order.
    pub aggregates: Vec<AggregateSpec>,
    /// Relative accuracy of quantile sketches.
    pub sketch_alpha: f64,
    /// Bucket limit of quantile sketches.
    pub sketch_max_buckets: u32,
}

/// The running value of one aggregate in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Accumulator {
    /// Records counted.
    Count(u64),
    /// Sum and number of values.
    Sum(f64, u64),
    /// Minimum so far.
    Min(Option<f64>),
    /// Maximum so far.
    Max(Option<f64>),
    /// Sum and number of values.
    Mean(f64, u64),
    /// The sketch.
    Quantile(DdSketch),
}

/// One open window of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenWindow {
    /// Records added.
    pub records: u64,
    /// One accumulator per aggregate.
    pub accumulators: Vec<Accumulator>,
    /// The last revision emitted, once the window has fired.
    pub emitted_revision: Option<u32>,
}

/// Everything a window operator holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// The last watermark received.
    pub watermark: EventTime,
    /// Open windows by start, then key.
    pub windows: BTreeMap<i64, BTreeMap<String, OpenWindow>>,
    /// Records too late for some, not all, of their (sliding) windows.
    pub partially_late: u64,
}

impl Default for WindowState {
    fn default() -> Self {
        WindowState {
            watermark: EventTime::MIN,
            windows: BTreeMap::new(),
            partially_late: 0,
        }
    }
}

/// The windowed reduce.
///
/// Ports: `out`, `late`, `error`.
#[derive(Debug, Clone)]
pub struct Window {
    config: WindowConfig,
    state: WindowState,
}

impl Window {
    /// The port of records too late for all their windows.
    pub const LATE: Port = Port(1);
    /// The port of records whose key or fields are unusable.
    pub const ERROR: Port = Port(2);

    /// Returns an empty window operator.
    pub fn new(config: WindowConfig) -> Window {
        Window {
            config,
            state: WindowState::default(),
        }
    }

    /// Returns a window operator that resumes from a checkpointed state.
    pub fn with_state(config: WindowConfig, state: WindowState) -> Window {
        Window { config, state }
    }

    /// Returns the port names, by index.
    pub fn port_names() -> Vec<String> {
        ["out", "late", "error"].map(String::from).to_vec()
    }

    /// Returns the state to checkpoint.
    pub fn state(&self) -> &WindowState {
        &self.state
    }

    /// Returns the output field names, in order.
    pub fn output_fields(config: &WindowConfig) -> Vec<String> {
        let fixed = [
            "key",
            "window_start",
            "window_end",
            "revision",
            "kind",
            "records",
        ];
        let mut names: Vec<String> = fixed.map(String::from).to_vec();
        names.extend(
            config
                .aggregates
                .iter()
                .map(|aggregate| aggregate.name.clone()),
        );
        names
    }

    /// Processes one record.
    pub fn on_record(&mut self, record: Record, out: &mut Vec<Emitted>) {
        let (key, values) = match self.read(&record) {
            Ok(found) => found,
            Err(error) => {
                return out.push(Emitted {
                    port: Self::ERROR,
                    record: with_error(record, error),
                });
            }
        };
        let watermark = self.state.watermark;
        let mut accepted = 0;
        let mut refused = 0;
        for start in self.window_starts(record.time) {
            let end = start.saturating_add(self.config.size_ms);
            let purged = watermark.0 >= end.saturating_add(self.config.allowed_lateness_ms);
            if purged {
                refused += 1;
                continue;
            }
            accepted += 1;
            let window = self
                .state
                .windows
                .entry(start)
                .or_default()
                .entry(key.clone())
                .or_insert_with(|| new_window(&self.config));
            add_values(window, &values);
            let already_due = watermark.0 >= end;
            if already_due {
                // Late but allowed: the window's result changes now, so it is sent again.
                let revision = window.emitted_revision.map_or(0, |revision| revision + 1);
                window.emitted_revision = Some(revision);
                let kind = if revision == 0 { "final" } else { "update" };
                let result = result_record(&self.config, &key, start, window, revision, kind);
                out.push(Emitted::out(result));
            }
        }
        if accepted == 0 {
            out.push(Emitted {
                port: Self::LATE,
                record,
            });
        } else if refused > 0 {
            self.state.partially_late += 1;
        }
    }

    /// Advances event time: fires the windows that end at or before the watermark and
    /// purges those past their allowed lateness. A watermark never goes back: a lower one
    /// than already seen changes nothing.
    pub fn on_watermark(&mut self, watermark: EventTime, out: &mut Vec<Emitted>) {
        // The scan below also runs when the watermark did not move: after `absorb`, windows
        // handed over by another task may be due already.
        let watermark = watermark.max(self.state.watermark);
        self.state.watermark = watermark;
        let mut purged_starts = Vec::new();
        for (start, keys) in self.state.windows.iter_mut() {
            let end = start.saturating_add(self.config.size_ms);
            if end > watermark.0 {
                break; // windows are in start order, so every later one ends later
            }
            for (key, window) in keys.iter_mut() {
                if window.emitted_revision.is_none() {
                    window.emitted_revision = Some(0);
                    out.push(Emitted::out(result_record(
                        &self.config,
                        key,
                        *start,
                        window,
                        0,
                        "final",
                    )));
                }
            }
            if watermark.0 >= end.saturating_add(self.config.allowed_lateness_ms) {
                purged_starts.push(*start);
            }
        }
        for start in purged_starts {
            self.state.windows.remove(&start);
        }
    }

    /// Returns the starts of the windows covering `time`, earliest first.
    fn window_starts(&self, time: EventTime) -> impl Iterator<Item = i64> + use<> {
        let (size, slide) = (self.config.size_ms, self.config.slide_ms);
        let last_start = time.0.div_euclid(slide).saturating_mul(slide);
        let count = (size + slide - 1) / slide;
        let first_start = last_start.saturating_sub((count - 1).saturating_mul(slide));
        (0..count)
            .map(move |index| first_start.saturating_add(index * slide))
            .filter(move |start| start.saturating_add(size) > time.0)
    }

    /// Reads the key and the numeric value of every field aggregate.
    fn read(&self, record: &Record) -> Result<(String, Vec<Option<f64>>), String> {
        let key = match &self.config.key {
            None => record.key.clone().ok_or("the record has no key")?,
            Some(expr) => match expr.eval(record).map_err(|error| error.to_string())? {
                Value::Null => return Err("the window key is null".into()),
                value => value.to_key_string(),
            },
        };
        let mut values = Vec::with_capacity(self.config.aggregates.len());
        for aggregate in &self.config.aggregates {
            let value = match aggregate
                .field
                .as_deref()
                .map(|field| (field, record.get(field)))
            {
                None | Some((_, Value::Null)) => None,
                Some((field, value)) => match value.as_f64() {
                    Some(number) if number.is_finite() => Some(number),
                    _ => {
                        return Err(format!(
                            "field `{field}` is {}, not a number",
                            value.type_name()
                        ));
                    }
                },
            };
            values.push(value);
        }
        Ok((key, values))
    }
}

fn new_window(config: &WindowConfig) -> OpenWindow {
    let accumulators = config
        .aggregates
        .iter()
        .map(|aggregate| match aggregate.function {
            AggregateFunction::Count => Accumulator::Count(0),
            AggregateFunction::Sum => Accumulator::Sum(0.0, 0),
            AggregateFunction::Min => Accumulator::Min(None),
            AggregateFunction::Max => Accumulator::Max(None),
            AggregateFunction::Mean => Accumulator::Mean(0.0, 0),
            AggregateFunction::Quantile { .. } => Accumulator::Quantile(DdSketch::new(
                config.sketch_alpha,
                config.sketch_max_buckets,
            )),
        })
        .collect();
    OpenWindow {
        records: 0,
        accumulators,
        emitted_revision: None,
    }
}

fn add_values(window: &mut OpenWindow, values: &[Option<f64>]) {
    window.records += 1;
    for (accumulator, value) in window.accumulators.iter_mut().zip(values) {
        match (accumulator, value) {
            (Accumulator::Count(count), _) => *count += 1,
            (_, None) => {}
            (Accumulator::Sum(sum, count) | Accumulator::Mean(sum, count), Some(value)) => {
                *sum += value;
                *count += 1;
            }
            (Accumulator::Min(min), Some(value)) => {
                *min = Some(min.map_or(*value, |min| min.min(*value)))
            }
            (Accumulator::Max(max), Some(value)) => {
                *max = Some(max.map_or(*value, |max| max.max(*value)))
            }
            (Accumulator::Quantile(sketch), Some(value)) => {
                sketch.add(*value);
            }
        }
    }
}

fn result_record(
    config: &WindowConfig,
    key: &str,
    start: i64,
    window: &OpenWindow,
    revision: u32,
    kind: &str,
) -> Record {
    let end = start.saturating_add(config.size_ms);
    let mut record = Record {
        id: RecordId(derive_id(fnv1a_64(key.as_bytes()), b"window", start as u64)),
        time: EventTime(end.saturating_sub(1)),
        key: Some(key.to_owned()),
        fields: Default::default(),
    };
    let fixed: [(&str, Value); 6] = [
        ("key", Value::from(key)),
        ("window_start", Value::Int(start)),
        ("window_end", Value::Int(end)),
        ("revision", Value::Int(i64::from(revision))),
        ("kind", Value::from(kind)),
        ("records", Value::Int(window.records as i64)),
    ];
    for (name, value) in fixed {
        record.fields.insert(name.to_owned(), value);
    }
    for (aggregate, accumulator) in config.aggregates.iter().zip(&window.accumulators) {
        let value = match (accumulator, &aggregate.function) {
            (Accumulator::Count(count), _) => Value::Int(*count as i64),
            (Accumulator::Sum(_, 0) | Accumulator::Mean(_, 0), _) => Value::Null,
            (Accumulator::Sum(sum, _), _) => Value::Float(*sum),
            (Accumulator::Mean(sum, count), _) => Value::Float(sum / *count as f64),
            (Accumulator::Min(found) | Accumulator::Max(found), _) => {
                found.map_or(Value::Null, Value::Float)
            }
            (Accumulator::Quantile(sketch), AggregateFunction::Quantile { q }) => {
                sketch.quantile(*q).map_or(Value::Null, Value::Float)
            }
            (Accumulator::Quantile(_), _) => Value::Null,
        };
        record.fields.insert(aggregate.name.clone(), value);
    }
    record
}

impl KeyedState for WindowState {
    fn split_off(&mut self, partitions: u32, moved: &BTreeSet<u32>) -> WindowState {
        let mut leaving = WindowState {
            watermark: self.watermark,
            windows: BTreeMap::new(),
            partially_late: 0,
        };
        for (start, keys) in self.windows.iter_mut() {
            let (moving, staying): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(keys)
                .into_iter()
                .partition(|(key, _)| moved.contains(&partition_of(key, partitions)));
            *keys = staying;
            if !moving.is_empty() {
                leaving.windows.insert(*start, moving);
            }
        }
        self.windows.retain(|_, keys| !keys.is_empty());
        leaving
    }

    fn absorb(&mut self, other: WindowState) {
        // Both tasks follow the same sources, so their watermarks differ only by what is in
        // flight. The higher one wins: windows of the other task already due fire at the
        // next `on_watermark`, and a fired window never goes back to "not yet due" (which
        // would hold its late updates back).
        self.watermark = self.watermark.max(other.watermark);
        self.partially_late += other.partially_late;
        for (start, keys) in other.windows {
            self.windows.entry(start).or_default().extend(keys);
        }
    }
}

#[cfg(test)]
mod tests;
