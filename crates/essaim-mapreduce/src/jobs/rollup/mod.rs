//! `rollup`: sales totals at a chosen level of a category taxonomy.
//!
//! Sales are lines `category<SEP>amount` (columns and separator configurable), read as
//! RFC 4180 CSV with `csv-core`: a field may be quoted (`"Food, fresh"`), with `""` for
//! a quote inside it, and the separator only cuts fields outside quotes. Records are
//! lines (Hadoop's `LineRecordReader`), so a quoted field cannot hold a line break. The
//! taxonomy is a side file of lines `child<TAB>parent`; a category that is nobody's
//! child is a root, at level 0, its children at level 1, and so on. Each sale counts
//! towards its category's ancestor at level `level`; a sale whose category is shallower
//! than `level` counts towards its own category. Every mapper loads the taxonomy once
//! (at most `rollup.max_taxonomy_entries` lines, 1,000,000 by default) and refuses a
//! taxonomy with a cycle or a child with two parents.
//!
//! Money is never a float: amounts are decimals with at most two fractional digits
//! (`12`, `-3.5`, `0.07`), parsed into integer cents, summed exactly as integers by the
//! combiner and the reducer (overflow is an error), and printed back with two digits.
//! A malformed amount fails the task with a permanent error naming the file and
//! offset.
//!
//! A malformed line (a quote left open, a quote inside an unquoted field or after a
//! closing quote, or too few fields for the category and amount columns) is counted and
//! skipped rather than summed under a wrong category: the map task adds it to the
//! counter `rollup.malformed.rows` (summed in the job's counters) and logs the first
//! one of the task with its file and byte offset at `warn`. A job whose counter is not
//! 0 has left sales out of its totals.
//!
//! A category the taxonomy does not know is summed under `(unknown)` (so totals still
//! add up to the grand total), or fails the task with `unknown=error`.
//!
//! Output lines: `category<TAB>total`, e.g. `Electronics<TAB>1234.50`.
//!
//! Parameters: `taxonomy` (required, a path every worker can read), `level` (required,
//! 0 = roots), `separator` (default tab), `category_column` (default 0),
//! `amount_column` (default 1), `header` (default `false`: when `true` the first line
//! of each file is skipped), `unknown` (`group`, default, or `error`),
//! `rollup.max_taxonomy_entries`.

use rustc_hash::FxHashMap;

use crate::api::{Emit, JobDefinition, JobError, JobParams, Mapper, Record, Reducer};
use crate::counters::Counters;
use crate::jobs::common::{
    DecimalSumReducer, bool_param, non_empty_param, parse_decimal, push_decimal, record_location,
    trim_carriage_return,
};
use crate::jobs::csv::{CsvSplitter, log_skipped_row, separator_param};

/// Name of the job.
pub const NAME: &str = "rollup";
/// Parameter: path of the taxonomy file, lines `child<TAB>parent` (required).
pub const TAXONOMY_PARAM: &str = "taxonomy";
/// Parameter: the level to total at, 0 = roots (required).
pub const LEVEL_PARAM: &str = "level";
/// Parameter: the field separator of sales lines (default tab).
pub const SEPARATOR_PARAM: &str = "separator";
/// Parameter: 0-based column of the category (default 0).
pub const CATEGORY_COLUMN_PARAM: &str = "category_column";
/// Parameter: 0-based column of the amount (default 1).
pub const AMOUNT_COLUMN_PARAM: &str = "amount_column";
/// Parameter: skip each file's first line (default `false`).
pub const HEADER_PARAM: &str = "header";
/// Parameter: what to do with a category the taxonomy lacks, `group` or `error`.
pub const UNKNOWN_PARAM: &str = "unknown";
/// Parameter: most lines a taxonomy may have.
pub const MAX_TAXONOMY_ENTRIES_PARAM: &str = "rollup.max_taxonomy_entries";
/// Counter: sales lines skipped because they could not be read (an open quote, too
/// few fields).
pub const MALFORMED_ROWS_COUNTER: &str = "rollup.malformed.rows";
/// The group of sales whose category the taxonomy does not know.
pub const UNKNOWN_GROUP: &str = "(unknown)";
const DEFAULT_MAX_TAXONOMY_ENTRIES: usize = 1_000_000;

/// The `rollup` job.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rollup;

#[derive(Debug, Clone)]
struct Settings {
    taxonomy: String,
    level: usize,
    separator: u8,
    category_column: usize,
    amount_column: usize,
    header: bool,
    unknown_is_error: bool,
    max_taxonomy_entries: usize,
}

impl Settings {
    fn parse(params: &JobParams) -> Result<Self, JobError> {
        let level_text = params.require(LEVEL_PARAM)?;
        let level = level_text.parse().map_err(|error| {
            JobError::permanent(format!(
                "parameter `{LEVEL_PARAM}` = `{level_text}`: {error}"
            ))
        })?;
        let unknown_is_error = match params.get(UNKNOWN_PARAM).unwrap_or("group") {
            "group" => false,
            "error" => true,
            other => {
                return Err(JobError::permanent(format!(
                    "parameter `{UNKNOWN_PARAM}` = `{other}`: expected `group` or `error`"
                )));
            }
        };
        let settings = Self {
            taxonomy: non_empty_param(params, TAXONOMY_PARAM)?.to_string(),
            level,
            separator: separator_param(params, SEPARATOR_PARAM, b'\t')?,
            category_column: params.parse_or(CATEGORY_COLUMN_PARAM, 0)?,
            amount_column: params.parse_or(AMOUNT_COLUMN_PARAM, 1)?,
            header: bool_param(params, HEADER_PARAM, false)?,
            unknown_is_error,
            max_taxonomy_entries: params
                .parse_or(MAX_TAXONOMY_ENTRIES_PARAM, DEFAULT_MAX_TAXONOMY_ENTRIES)?,
        };
        if settings.category_column == settings.amount_column {
            return Err(JobError::permanent(format!(
                "parameters `{CATEGORY_COLUMN_PARAM}` and `{AMOUNT_COLUMN_PARAM}` must differ"
            )));
        }
        Ok(settings)
    }
}

impl JobDefinition for Rollup {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "totals sales amounts at a level of a category taxonomy: `category<TAB>total`"
    }

    fn path_params(&self) -> &[&str] {
        &[TAXONOMY_PARAM]
    }

    fn validate(&self, params: &JobParams) -> Result<(), JobError> {
        Settings::parse(params).map(|_| ())
    }

    fn mapper(&self, params: &JobParams, _step: usize) -> Result<Box<dyn Mapper>, JobError> {
        let settings = Settings::parse(params)?;
        let taxonomy = Taxonomy::load(&settings)?;
        Ok(Box::new(RollupMapper {
            splitter: CsvSplitter::new(settings.separator),
            settings,
            taxonomy,
            ancestors: FxHashMap::default(),
            cents: Vec::new(),
            malformed_rows: 0,
        }))
    }

    fn combiner(
        &self,
        _params: &JobParams,
        _step: usize,
    ) -> Result<Option<Box<dyn Reducer>>, JobError> {
        Ok(Some(Box::new(DecimalSumReducer::default())))
    }

    fn reducer(&self, _params: &JobParams, _step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(Box::new(DecimalSumReducer::default()))
    }

    /// The reducer sums cents; the output shows them as an amount with two decimals.
    fn format_output(&self, key: &[u8], value: &[u8], line: &mut Vec<u8>) {
        line.extend_from_slice(key);
        line.push(b'\t');
        match parse_decimal(value) {
            Some(cents) => push_amount(line, cents),
            // Cannot happen with this job's reducer; show the value rather than lose it.
            None => line.extend_from_slice(value),
        }
    }
}

/// Parses a decimal amount with at most two fractional digits into cents: an optional
/// `-` or `+`, digits, optionally `.` and one or two digits (`.5` and `5.` are
/// accepted). `None` when malformed or out of range.
fn parse_cents(text: &[u8]) -> Option<i128> {
    let (negative, unsigned) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let (whole, fraction) = match unsigned.iter().position(|byte| *byte == b'.') {
        Some(dot) => (&unsigned[..dot], &unsigned[dot + 1..]),
        None => (unsigned, &b""[..]),
    };
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 2 {
        return None;
    }
    let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    if !all_digits(whole) || !all_digits(fraction) || whole.len() > 30 {
        return None;
    }
    let whole_value = if whole.is_empty() {
        0
    } else {
        parse_decimal(whole)?
    };
    let mut fraction_cents = if fraction.is_empty() {
        0
    } else {
        parse_decimal(fraction)?
    };
    if fraction.len() == 1 {
        fraction_cents *= 10;
    }
    let cents = whole_value.checked_mul(100)?.checked_add(fraction_cents)?;
    Some(if negative { -cents } else { cents })
}

/// Appends cents as an amount with two decimals: `-12.05`, `0.00`.
fn push_amount(line: &mut Vec<u8>, cents: i128) {
    if cents < 0 {
        line.push(b'-');
    }
    let magnitude = cents.unsigned_abs();
    push_decimal(line, (magnitude / 100) as i128);
    line.push(b'.');
    let fraction = (magnitude % 100) as u8;
    line.push(b'0' + fraction / 10);
    line.push(b'0' + fraction % 10);
}

/// Child → parent, loaded from the taxonomy file.
#[derive(Debug, Default)]
struct Taxonomy {
    parent_of: FxHashMap<Vec<u8>, Vec<u8>>,
    /// Every category named, as a child or a parent.
    known: rustc_hash::FxHashSet<Vec<u8>>,
}

impl Taxonomy {
    fn load(settings: &Settings) -> Result<Self, JobError> {
        let bytes = std::fs::read(&settings.taxonomy).map_err(|error| {
            JobError::retryable(format!(
                "parameter `{TAXONOMY_PARAM}`: failed to read `{}`: {error}",
                settings.taxonomy
            ))
        })?;
        Self::parse(&bytes, settings.max_taxonomy_entries)
    }

    /// Parses `child<TAB>parent` lines (a line with a single name declares a root;
    /// empty lines are skipped) and checks the result is a forest.
    fn parse(bytes: &[u8], max_entries: usize) -> Result<Self, JobError> {
        let mut taxonomy = Self::default();
        let mut entries = 0;
        for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
            let line = trim_carriage_return(line);
            if line.is_empty() {
                continue;
            }
            entries += 1;
            if entries > max_entries {
                return Err(JobError::permanent(format!(
                    "parameter `{TAXONOMY_PARAM}`: more than {max_entries} entries \
                     (raise `{MAX_TAXONOMY_ENTRIES_PARAM}`)"
                )));
            }
            let mut fields = line.split(|byte| *byte == b'\t');
            let child = fields.next().unwrap_or_default();
            let parent = fields.next();
            let malformed =
                child.is_empty() || parent.is_some_and(<[u8]>::is_empty) || fields.next().is_some();
            if malformed {
                return Err(JobError::permanent(format!(
                    "parameter `{TAXONOMY_PARAM}`: line {} is not `child<TAB>parent`",
                    index + 1
                )));
            }
            taxonomy.known.insert(child.to_vec());
            let Some(parent) = parent else {
                continue;
            };
            taxonomy.known.insert(parent.to_vec());
            let previous = taxonomy.parent_of.insert(child.to_vec(), parent.to_vec());
            if previous.is_some_and(|previous| previous != parent) {
                return Err(JobError::permanent(format!(
                    "parameter `{TAXONOMY_PARAM}`: `{}` has two parents (line {})",
                    String::from_utf8_lossy(child),
                    index + 1
                )));
            }
        }
        taxonomy.check_acyclic()?;
        Ok(taxonomy)
    }

    /// Refuses a cycle: walking up from any category must reach a root within as
    /// many steps as there are categories.
    fn check_acyclic(&self) -> Result<(), JobError> {
        // Categories already known to reach a root; each is walked past at most once
        // per start, so the check is linear in practice.
        let mut reaches_root: rustc_hash::FxHashSet<&[u8]> = rustc_hash::FxHashSet::default();
        for start in self.parent_of.keys() {
            let mut path: Vec<&[u8]> = Vec::new();
            let mut current: &[u8] = start;
            loop {
                if reaches_root.contains(current) {
                    break;
                }
                if path.len() > self.parent_of.len() {
                    return Err(JobError::permanent(format!(
                        "parameter `{TAXONOMY_PARAM}`: a cycle goes through `{}`",
                        String::from_utf8_lossy(start)
                    )));
                }
                path.push(current);
                match self.parent_of.get(current) {
                    Some(parent) => current = parent,
                    None => break,
                }
            }
            reaches_root.extend(path);
        }
        Ok(())
    }

    /// The ancestor of `category` at `level` (the category itself when it is
    /// shallower), or `None` when the taxonomy does not know it.
    fn ancestor_at(&self, category: &[u8], level: usize) -> Option<Vec<u8>> {
        if !self.known.contains(category) {
            return None;
        }
        // Root-first chain of ancestors, category last. Finite: checked acyclic.
        let mut chain = vec![category];
        let mut current = category;
        while let Some(parent) = self.parent_of.get(current) {
            chain.push(parent);
            current = parent;
        }
        chain.reverse();
        let at_level = chain.get(level).copied().unwrap_or(category);
        Some(at_level.to_vec())
    }
}

struct RollupMapper {
    settings: Settings,
    taxonomy: Taxonomy,
    /// Category → group to sum under, memoised: sales have few distinct categories.
    ancestors: FxHashMap<Vec<u8>, Vec<u8>>,
    cents: Vec<u8>,
    splitter: CsvSplitter,
    /// Lines skipped as malformed (see the module doc).
    malformed_rows: u64,
}

impl RollupMapper {
    /// Counts and logs a line skipped as malformed.
    fn skip_malformed(&mut self, record: &Record<'_>, what: &str) {
        self.malformed_rows += 1;
        log_skipped_row(
            NAME,
            MALFORMED_ROWS_COUNTER,
            self.malformed_rows,
            record,
            what,
        );
    }
}

impl Mapper for RollupMapper {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let is_header = self.settings.header && record.offset == 0;
        let line = trim_carriage_return(record.data);
        if is_header || line.is_empty() {
            return Ok(());
        }
        let fields = match self.splitter.split(line) {
            Ok(fields) => fields,
            Err(error) => {
                self.skip_malformed(record, &error.to_string());
                return Ok(());
            }
        };
        let (Some(category), Some(amount)) = (
            fields.get(self.settings.category_column),
            fields.get(self.settings.amount_column),
        ) else {
            self.skip_malformed(record, "too few fields");
            return Ok(());
        };
        let malformed = |what: &str| {
            JobError::permanent(format!(
                "sale {}: {what}",
                record_location(record.path, record.offset)
            ))
        };
        let Some(cents) = parse_cents(amount) else {
            return Err(malformed(&format!(
                "`{}` is not an amount with at most two decimals",
                String::from_utf8_lossy(amount)
            )));
        };
        if !self.ancestors.contains_key(category) {
            let group = match self.taxonomy.ancestor_at(category, self.settings.level) {
                Some(ancestor) => ancestor,
                None if self.settings.unknown_is_error => {
                    return Err(malformed(&format!(
                        "category `{}` is not in the taxonomy",
                        String::from_utf8_lossy(category)
                    )));
                }
                None => UNKNOWN_GROUP.as_bytes().to_vec(),
            };
            self.ancestors.insert(category.to_vec(), group);
        }
        let group = &self.ancestors[category];
        self.cents.clear();
        push_decimal(&mut self.cents, cents);
        out.emit(group, &self.cents)
    }

    fn counters(&self, counters: &mut Counters) {
        counters.add(MALFORMED_ROWS_COUNTER, self.malformed_rows);
    }
}

#[cfg(test)]
mod tests;
