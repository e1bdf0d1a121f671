//! The key of a map task's output: SHA-256 over everything that decides the bytes of
//! its `map.out`, so that two tasks with one key write the same file.
//!
//! What goes in, each field length-prefixed (so no two different inputs concatenate to
//! one byte string), after a format version: the code version of the binary; the job's
//! whole [`JobConfig`] but its output directory (name, parameters, steps, reducers, sort
//! buffer, merge factor, codec, storage options, shipped files' hashes, skipping) as
//! JSON, whose maps are ordered; and each split's path, content hash (SHA-256 of the
//! whole file), start and length. The path is in because a mapper sees it
//! (`Record::path`: `index` and `grep` write it out).
//!
//! Everything is in, rather than only what a given job reads: a key that says "changed"
//! when nothing that matters changed costs a recomputation, one that says "unchanged"
//! when something did costs a wrong answer.

use sha2::{Digest, Sha256};

use crate::config::JobConfig;
use crate::payload::InputSplit;

/// Version of the key's encoding: a change of it invalidates every stored output.
pub const KEY_FORMAT_VERSION: u32 = 1;

/// SHA-256 of a whole input file's bytes.
pub type ContentHash = [u8; 32];

/// The key of one map task's output, as 64 hexadecimal digits (the entry's file name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskKey(String);

impl TaskKey {
    /// The key named by a stored entry's file name.
    pub(crate) fn from_hex(digits: &str) -> Self {
        Self(digits.to_string())
    }

    /// The key's hexadecimal digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Returns the key of the map task of `config` over `splits`, each with the content
/// hash of its file, run by a binary of `code_version`.
pub fn map_task_key(
    code_version: &str,
    config: &JobConfig,
    splits: &[(InputSplit, ContentHash)],
) -> TaskKey {
    let mut hasher = Sha256::new();
    field(&mut hasher, b"essaim.mapreduce.map");
    field(&mut hasher, &KEY_FORMAT_VERSION.to_le_bytes());
    field(&mut hasher, code_version.as_bytes());
    field(&mut hasher, &config_bytes(config));
    field(&mut hasher, &(splits.len() as u64).to_le_bytes());
    for (split, content) in splits {
        field(&mut hasher, split.path.as_os_str().as_encoded_bytes());
        field(&mut hasher, content);
        field(&mut hasher, &split.start.to_le_bytes());
        field(&mut hasher, &split.length.to_le_bytes());
    }
    TaskKey(hex(&hasher.finalize()))
}

/// The job's configuration as ordered JSON, without its output directory (a re-run
/// writes elsewhere; where the parts go does not change what a map writes).
fn config_bytes(config: &JobConfig) -> Vec<u8> {
    let mut value = serde_json::to_value(config).expect("a job configuration is JSON");
    if let Some(object) = value.as_object_mut() {
        object.remove("output_dir");
    }
    serde_json::to_vec(&value).expect("a JSON value is JSON")
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// Lower-case hexadecimal digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobConfig;

    fn config() -> JobConfig {
        crate::test_support::job_config("wordcount")
    }

    fn splits() -> Vec<(InputSplit, ContentHash)> {
        let split = |path: &str, start, length| InputSplit {
            path: path.into(),
            start,
            length,
        };
        vec![
            (split("/in/a.txt", 0, 100), [1; 32]),
            (split("/in/b.txt", 0, 50), [2; 32]),
        ]
    }

    fn key(code: &str, config: &JobConfig, splits: &[(InputSplit, ContentHash)]) -> TaskKey {
        map_task_key(code, config, splits)
    }

    #[test]
    fn the_same_inputs_give_the_same_key_whatever_the_output_directory() {
        let first = key("v1", &config(), &splits());
        assert_eq!(first, key("v1", &config(), &splits()));
        assert_eq!(first.as_str().len(), 64);
        let mut elsewhere = config();
        elsewhere.output_dir = essaim_storage::Location::Local("/other".into());
        assert_eq!(first, key("v1", &elsewhere, &splits()));
    }

    #[test]
    fn any_change_of_what_decides_the_output_changes_the_key() {
        let base = key("v1", &config(), &splits());
        assert_ne!(base, key("v2", &config(), &splits()), "code version");
        let mut changed = Vec::new();
        let mut reducers = config();
        reducers.reducers += 1;
        changed.push(reducers);
        let mut param = config();
        param.params.0.insert("lowercase".into(), "true".into());
        changed.push(param);
        let mut job = config();
        job.job = "grep".into();
        changed.push(job);
        let mut buffer = config();
        buffer.sort_buffer_bytes += 1;
        changed.push(buffer);
        let mut skip = config();
        skip.skip.max_records = 3;
        changed.push(skip);
        for config in changed {
            assert_ne!(base, key("v1", &config, &splits()), "{config:?}");
        }
        let mut content = splits();
        content[1].1[31] ^= 1;
        let mut range = splits();
        range[0].0.length -= 1;
        let mut start = splits();
        start[1].0.start = 1;
        let mut path = splits();
        path[0].0.path = "/in/c.txt".into();
        let fewer = splits()[..1].to_vec();
        let mut swapped = splits();
        swapped.swap(0, 1);
        for splits in [content, range, start, path, fewer, swapped] {
            assert_ne!(base, key("v1", &config(), &splits), "{splits:?}");
        }
    }

    #[test]
    fn fields_are_delimited() {
        let split = |path: &str| {
            (
                InputSplit {
                    path: path.into(),
                    start: 0,
                    length: 1,
                },
                [0; 32],
            )
        };
        assert_ne!(
            key("v1", &config(), &[split("/a")]),
            key("v1", &config(), &[split("/a\0")])
        );
        assert_ne!(key("v", &config(), &[]), key("v1", &config(), &[]));
    }
}
