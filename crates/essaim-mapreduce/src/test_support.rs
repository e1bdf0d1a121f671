//! Helpers shared by the unit tests of the data path: a toy job and a map-output reader
//! (seeded inputs come from `essaim_core::rng`).

use crate::api::{Emit, JobDefinition, JobError, JobParams, Mapper, Record, Reducer, Values};

/// Word count with a summing combiner: the toy job of the round-trip tests. Its
/// parameter `steps` = 2 adds a second step that swaps count and word, so that the
/// chained path is exercised too.
pub(crate) struct ToyWordCount;

struct SplitWords;

impl Mapper for SplitWords {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        for word in record.data.split(|byte| byte.is_ascii_whitespace()) {
            if !word.is_empty() {
                out.emit(word, b"1")?;
            }
        }
        Ok(())
    }
}

/// Step 2's mapper: `word\tcount` becomes key `count` (zero-padded), value `word`.
struct SwapCountAndWord;

impl Mapper for SwapCountAndWord {
    fn map(&mut self, record: &Record<'_>, out: &mut dyn Emit) -> Result<(), JobError> {
        let line = record.data;
        let tab = line
            .iter()
            .position(|byte| *byte == b'\t')
            .ok_or_else(|| JobError::permanent("no tab in a chained record"))?;
        let count: u64 = std::str::from_utf8(&line[tab + 1..])
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| JobError::permanent("count is not a number"))?;
        out.emit(format!("{count:010}").as_bytes(), &line[..tab])
    }
}

struct SumCounts;

impl Reducer for SumCounts {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let mut total = 0u64;
        while let Some(value) = values.next_value()? {
            let count: u64 = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| JobError::permanent("count is not a number"))?;
            total += count;
        }
        out.emit(key, total.to_string().as_bytes())
    }
}

/// Joins the values of a key with its separator byte, in the order they arrive.
pub(crate) struct JoinValues(pub(crate) u8);

impl Reducer for JoinValues {
    fn reduce(
        &mut self,
        key: &[u8],
        values: &mut dyn Values,
        out: &mut dyn Emit,
    ) -> Result<(), JobError> {
        let mut joined = Vec::new();
        while let Some(value) = values.next_value()? {
            if !joined.is_empty() {
                joined.push(self.0);
            }
            joined.extend_from_slice(value);
        }
        out.emit(key, &joined)
    }
}

impl JobDefinition for ToyWordCount {
    fn name(&self) -> &str {
        "toy-wordcount"
    }

    fn description(&self) -> &str {
        "counts words (test job)"
    }

    fn steps(&self, params: &JobParams) -> usize {
        params.parse_or("steps", 1usize).unwrap_or(1)
    }

    fn mapper(&self, _params: &JobParams, step: usize) -> Result<Box<dyn Mapper>, JobError> {
        Ok(if step == 0 {
            Box::new(SplitWords)
        } else {
            Box::new(SwapCountAndWord)
        })
    }

    fn combiner(
        &self,
        params: &JobParams,
        step: usize,
    ) -> Result<Option<Box<dyn Reducer>>, JobError> {
        let wanted = params.get("combiner") != Some("off");
        Ok((step == 0 && wanted).then(|| Box::new(SumCounts) as Box<dyn Reducer>))
    }

    fn reducer(&self, _params: &JobParams, step: usize) -> Result<Box<dyn Reducer>, JobError> {
        Ok(if step == 0 {
            Box::new(SumCounts)
        } else {
            Box::new(JoinValues(b','))
        })
    }
}

/// Reads every record of a file of segments, through its footer: (partition, key,
/// value) in file order.
pub(crate) fn read_map_output(
    path: &std::path::Path,
    partitions: u32,
) -> Vec<(u32, Vec<u8>, Vec<u8>)> {
    use crate::format::{SegmentReader, decode_footer, footer_len};
    let bytes = std::fs::read(path).unwrap();
    let footer_start = bytes.len() - footer_len(partitions) as usize;
    let entries = decode_footer(
        &bytes[footer_start..],
        partitions,
        bytes.len() as u64,
        "test",
    )
    .unwrap();
    let mut records = Vec::new();
    for (partition, entry) in entries.iter().enumerate() {
        let segment = &bytes[entry.offset as usize..(entry.offset + entry.length) as usize];
        let mut reader = SegmentReader::new(segment, format!("partition {partition}")).unwrap();
        while reader.advance().unwrap() {
            records.push((
                partition as u32,
                reader.key().to_vec(),
                reader.value().to_vec(),
            ));
        }
        assert_eq!(reader.records_read(), entry.records);
    }
    records
}

/// A valid configuration of job `job` with the defaults, writing to `/out`.
pub(crate) fn job_config(job: &str) -> crate::config::JobConfig {
    use crate::config::{
        DEFAULT_MERGE_FACTOR, DEFAULT_REDUCERS, DEFAULT_SORT_BUFFER_BYTES, JobConfig,
    };
    JobConfig {
        version: crate::payload::PAYLOAD_VERSION,
        job: job.into(),
        params: JobParams::default(),
        steps: 1,
        reducers: DEFAULT_REDUCERS,
        output_dir: essaim_storage::Location::Local("/out".into()),
        sort_buffer_bytes: DEFAULT_SORT_BUFFER_BYTES,
        merge_factor: DEFAULT_MERGE_FACTOR,
        output_codec: None,
        storage: essaim_storage::S3Options::default(),
        files: Default::default(),
        skip: Default::default(),
    }
}
