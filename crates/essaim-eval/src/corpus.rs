//! The word count's corpus, shared by `essaim demo wordcount` and the evaluation:
//! seeded, Zipf-distributed words made of syllables (the same data on every machine,
//! nothing to download), counted as they are written, so that the count is an oracle made
//! without essaim; and the comparison of a job's committed output with it.

use std::collections::HashMap;
use std::path::Path;

use essaim_core::rng::SeededRng;
use essaim_mapreduce::api::JobParams;
use essaim_mapreduce::config::DEFAULT_MERGE_FACTOR;
use essaim_mapreduce::payload::part_file_name;
use essaim_mapreduce::plan::{JobRequest, PlannedJob, plan_job};
use essaim_mapreduce::registry::JobRegistry;

/// Distinct words of the corpus.
pub const VOCABULARY: usize = 20_000;
const SYLLABLES: &[&str] = &[
    "ba", "be", "bi", "bo", "ca", "ce", "ci", "co", "da", "de", "di", "do", "fa", "fe", "fi", "ga",
    "ge", "la", "le", "li", "lo", "ma", "me", "mi", "mo", "na", "ne", "ni", "no", "pa", "pe", "pi",
    "ra", "re", "ri", "ro", "sa", "se", "si", "so", "ta", "te", "ti", "to", "va", "ve", "vi", "ze",
];

/// Plans the `wordcount` job of `jobs` over `corpus` into `output`, with `reducers`
/// reduce tasks and map splits of `split_bytes`.
pub fn plan_wordcount(
    jobs: &JobRegistry,
    corpus: &Path,
    output: &Path,
    reducers: u32,
    split_bytes: u64,
) -> anyhow::Result<PlannedJob> {
    let request = JobRequest {
        params: JobParams::default(),
        inputs: vec![corpus.to_string_lossy().into_owned()],
        output_dir: output.to_path_buf(),
        reducers,
        split_bytes,
        open_cost_bytes: Some(essaim_mapreduce::config::DEFAULT_OPEN_COST_BYTES),
        // Smaller than the default: three workers and the client share one small
        // machine during the demo and the evaluation.
        sort_buffer_bytes: 32 << 20,
        merge_factor: DEFAULT_MERGE_FACTOR,
        output_codec: None,
        storage: Default::default(),
        files: Default::default(),
    };
    let job = jobs
        .get("wordcount")
        .ok_or_else(|| anyhow::anyhow!("this binary has no wordcount job"))?;
    Ok(plan_job(job.as_ref(), &request)?)
}

/// Writes `files` files of about `bytes` in all; returns how often each word was written.
pub fn write_corpus(
    dir: &Path,
    bytes: u64,
    files: u32,
    seed: u64,
) -> std::io::Result<HashMap<Vec<u8>, u64>> {
    std::fs::create_dir_all(dir)?;
    let mut rng = SeededRng::new(seed);
    let words: Vec<Vec<u8>> = (0..VOCABULARY)
        .map(|index| {
            let mut word = Vec::new();
            let mut rest = index + 1;
            while rest > 0 {
                word.extend_from_slice(SYLLABLES[rest % SYLLABLES.len()].as_bytes());
                rest /= SYLLABLES.len();
            }
            word
        })
        .collect();
    let mut counts: Vec<u64> = vec![0; VOCABULARY];
    let per_file = bytes / u64::from(files);
    let ln_vocabulary = (VOCABULARY as f64).ln();
    for file in 0..files {
        let mut text = Vec::with_capacity(per_file as usize + 128);
        let mut line_length = 0;
        while (text.len() as u64) < per_file {
            // Zipf(1): the log of the rank is uniform.
            let uniform = rng.up_to(1 << 30) as f64 / f64::from(1u32 << 30);
            let rank = ((uniform * ln_vocabulary).exp() as usize).clamp(1, VOCABULARY) - 1;
            let word = &words[rank];
            counts[rank] += 1;
            text.extend_from_slice(word);
            line_length += word.len() + 1;
            if line_length > 72 {
                text.push(b'\n');
                line_length = 0;
            } else {
                text.push(b' ');
            }
        }
        text.push(b'\n');
        std::fs::write(dir.join(format!("text-{file}.txt")), &text)?;
    }
    Ok(words
        .into_iter()
        .zip(counts)
        .filter(|(_, count)| *count > 0)
        .collect())
}

/// Reads the output parts; returns the counts and the first disagreement with `oracle`.
#[allow(clippy::type_complexity)]
pub fn compare(
    output: &Path,
    reducers: u32,
    oracle: &HashMap<Vec<u8>, u64>,
) -> std::io::Result<(HashMap<Vec<u8>, u64>, Option<String>)> {
    let mut counts = HashMap::new();
    for part in 0..reducers {
        let path = output.join(part_file_name(part));
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok((counts, Some(format!("{} is missing", path.display()))));
        };
        for line in bytes.split(|byte| *byte == b'\n').filter(|l| !l.is_empty()) {
            let Some(tab) = line.iter().rposition(|byte| *byte == b'\t') else {
                return Ok((counts, Some("a line without a count".into())));
            };
            let count = std::str::from_utf8(&line[tab + 1..])
                .ok()
                .and_then(|text| text.parse::<u64>().ok());
            let Some(count) = count else {
                return Ok((counts, Some("a count that is not a number".into())));
            };
            counts.insert(line[..tab].to_vec(), count);
        }
    }
    if counts.len() != oracle.len() {
        return Ok((
            counts.clone(),
            Some(format!(
                "{} distinct words in the output, {} written",
                counts.len(),
                oracle.len()
            )),
        ));
    }
    for (word, expected) in oracle {
        if counts.get(word) != Some(expected) {
            let problem = format!(
                "`{}` counted {:?}, written {expected} times",
                String::from_utf8_lossy(word),
                counts.get(word)
            );
            return Ok((counts, Some(problem)));
        }
    }
    Ok((counts, None))
}
