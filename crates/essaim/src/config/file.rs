//! Finding and reading `essaim.toml`: where the file is, and its settings as flat
//! `section.name` keys with the line each was written on. Knows nothing of the command
//! line: whether a key exists and whether its value is valid is decided in `layer.rs`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// The one file version this binary reads (`version = 1` at the top, optional).
pub const FILE_VERSION: i64 = 1;

/// Where the file was named, or the search path that found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `--config PATH` or `ESSAIM_CONFIG=PATH`: the file must exist.
    Named(PathBuf),
    /// The first file of the search path that exists, if any.
    Searched(Vec<PathBuf>),
    /// `--config ''` or `ESSAIM_CONFIG=''`: no file at all, even one on the search path.
    Disabled,
}

/// Decides where the file is from `--config` (as found on the command line),
/// `ESSAIM_CONFIG` and the user's directories, in that order.
pub fn locate(
    flag: Option<OsString>,
    env: Option<OsString>,
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> Location {
    if let Some(named) = flag.or(env) {
        if named.is_empty() {
            return Location::Disabled;
        }
        return Location::Named(PathBuf::from(named));
    }
    // Not the working directory: a file in a cloned repository could name another
    // coordinator (which would receive the user's token) or a token file to send.
    let mut search = Vec::new();
    let user_dir = match (xdg_config_home, home) {
        (Some(xdg), _) if !xdg.is_empty() => Some(PathBuf::from(xdg)),
        (_, Some(home)) if !home.is_empty() => Some(PathBuf::from(home).join(".config")),
        _ => None,
    };
    if let Some(dir) = user_dir {
        search.push(dir.join("essaim").join("essaim.toml"));
    }
    search.push(PathBuf::from("/etc/essaim/essaim.toml"));
    Location::Searched(search)
}

/// Returns the value of the global `--config` flag if the command line has one (before
/// any `--`): the file must be read before clap parses, since its values become
/// clap's defaults.
pub fn config_flag(argv: &[OsString]) -> Option<OsString> {
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        if word == "--" {
            return None;
        }
        if word == "--config" {
            return words.next().cloned();
        }
        if let Some(value) = word
            .to_str()
            .and_then(|word| word.strip_prefix("--config="))
        {
            return Some(value.into());
        }
    }
    None
}

/// A value as written in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum FileValue {
    /// A string, integer or float, as text.
    Scalar(String),
    /// `true` or `false`: the value of a flag such as `allow_commands`.
    Boolean(bool),
    /// An array of scalars, for options that take several values.
    List(Vec<String>),
}

/// One `section.name = value` of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileEntry {
    /// The value.
    pub value: FileValue,
    /// Its line, counted from 1.
    pub line: usize,
}

/// The settings of a configuration file.
#[derive(Clone, Debug, Default)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its settings by dotted key (`worker.slots`, `index.serve.listen`).
    pub entries: BTreeMap<String, FileEntry>,
}

impl ConfigFile {
    /// Returns `path:line`, how errors and `essaim config show` name a setting's origin.
    pub fn position(&self, line: usize) -> String {
        format!("{}:{line}", self.path.display())
    }
}

/// A configuration file that cannot be used: the file, the line and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` or `ESSAIM_CONFIG` cannot be read.
    #[error("cannot read configuration file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something is wrong at a line: bad TOML, an unknown key, an invalid value.
    #[error("{path}:{line}: {reason}")]
    AtLine {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong, naming the key.
        reason: String,
    },
}

impl ConfigError {
    /// Returns an error at `line` of `path`.
    pub fn at(path: &Path, line: usize, reason: impl Into<String>) -> Self {
        Self::AtLine {
            path: path.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }
}

/// Reads the file `location` points at; `None` when there is none to read.
pub fn load(location: &Location) -> Result<Option<ConfigFile>, ConfigError> {
    let path = match location {
        Location::Disabled => return Ok(None),
        Location::Named(path) => path.clone(),
        Location::Searched(candidates) => match candidates.iter().find(|path| path.is_file()) {
            Some(path) => path.clone(),
            None => return Ok(None),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&path, &text).map(Some)
}

/// Parses the text of a configuration file into dotted keys.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    let lines = LineIndex::new(text);
    let document = DeTable::parse(text).map_err(|error| {
        let line = error.span().map_or(1, |span| lines.line_of(span.start));
        ConfigError::at(path, line, format!("invalid TOML: {}", error.message()))
    })?;
    let mut file = ConfigFile {
        path: path.to_path_buf(),
        entries: BTreeMap::new(),
    };
    let flattener = Flattener {
        path,
        lines: &lines,
    };
    flattener.table(document.get_ref(), "", &mut file.entries)?;
    check_version(&mut file)?;
    Ok(file)
}

/// Takes the optional top-level `version` out of the entries, refusing any other version.
fn check_version(file: &mut ConfigFile) -> Result<(), ConfigError> {
    let Some(entry) = file.entries.remove("version") else {
        return Ok(());
    };
    let supported = entry.value == FileValue::Scalar(FILE_VERSION.to_string());
    if !supported {
        return Err(ConfigError::at(
            &file.path,
            entry.line,
            format!("`version` must be {FILE_VERSION} (the only version this essaim reads)"),
        ));
    }
    Ok(())
}

/// Walks the TOML tree, turning nested tables into dotted keys.
struct Flattener<'a> {
    path: &'a Path,
    lines: &'a LineIndex,
}

impl Flattener<'_> {
    fn table(
        &self,
        table: &DeTable<'_>,
        prefix: &str,
        entries: &mut BTreeMap<String, FileEntry>,
    ) -> Result<(), ConfigError> {
        for (name, value) in table {
            let key = if prefix.is_empty() {
                name.get_ref().to_string()
            } else {
                format!("{prefix}.{}", name.get_ref())
            };
            let line = self.lines.line_of(name.span().start);
            if let DeValue::Table(inner) = value.get_ref() {
                self.table(inner, &key, entries)?;
                continue;
            }
            let value = self.value(&key, line, value.get_ref())?;
            entries.insert(key, FileEntry { value, line });
        }
        Ok(())
    }

    fn value(&self, key: &str, line: usize, value: &DeValue<'_>) -> Result<FileValue, ConfigError> {
        if let DeValue::Boolean(flag) = value {
            return Ok(FileValue::Boolean(*flag));
        }
        if let DeValue::Array(items) = value {
            let mut list = Vec::with_capacity(items.len());
            for item in items {
                list.push(self.scalar(key, line, item.get_ref())?);
            }
            return Ok(FileValue::List(list));
        }
        self.scalar(key, line, value).map(FileValue::Scalar)
    }

    fn scalar(&self, key: &str, line: usize, value: &DeValue<'_>) -> Result<String, ConfigError> {
        match value {
            DeValue::String(text) => Ok(text.to_string()),
            // Decimal, whatever the radix written (`0x10` is 16), as clap parses decimal.
            DeValue::Integer(integer) => Ok(i64::from_str_radix(integer.as_str(), integer.radix())
                .map_or_else(
                    |_| integer.as_str().to_string(),
                    |number| number.to_string(),
                )),
            DeValue::Float(float) => Ok(float.as_str().to_string()),
            DeValue::Boolean(flag) => Ok(flag.to_string()),
            other => Err(ConfigError::at(
                self.path,
                line,
                format!(
                    "`{key}`: a {} is not a setting's value (use a string, number, boolean or array of them)",
                    other.type_str()
                ),
            )),
        }
    }
}

/// Byte offset → line number.
struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let breaks = text.match_indices('\n').map(|(offset, _)| offset + 1);
        Self {
            line_starts: std::iter::once(0).chain(breaks).collect(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|start| *start <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<ConfigFile, ConfigError> {
        parse(Path::new("essaim.toml"), text)
    }

    #[test]
    fn sections_become_dotted_keys_with_their_lines() {
        let file = parsed(
            "version = 1\n\n[worker]\nslots = 4\nallow_commands = true\ndata_dir = [\"/a\", \"/b\"]\n\n[index.serve]\nlisten = \"0.0.0.0:7480\"\n",
        )
        .unwrap();
        let entry = |key: &str| file.entries.get(key).cloned().unwrap();
        assert_eq!(entry("worker.slots").value, FileValue::Scalar("4".into()));
        assert_eq!(entry("worker.slots").line, 4);
        assert_eq!(
            entry("worker.allow_commands").value,
            FileValue::Boolean(true)
        );
        assert_eq!(
            entry("worker.data_dir").value,
            FileValue::List(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(entry("index.serve.listen").line, 9);
        assert!(
            !file.entries.contains_key("version"),
            "version is not a setting"
        );
    }

    #[test]
    fn bad_toml_and_other_versions_are_refused_at_their_line() {
        let syntax = parsed("[worker]\nslots = = 4\n").unwrap_err().to_string();
        assert!(
            syntax.starts_with("essaim.toml:2: invalid TOML"),
            "{syntax}"
        );
        let version = parsed("\nversion = 2\n").unwrap_err().to_string();
        assert_eq!(
            version,
            "essaim.toml:2: `version` must be 1 (the only version this essaim reads)"
        );
        let date = parsed("[coordinator]\nretention = 1979-05-27\n").unwrap_err();
        assert!(
            date.to_string()
                .contains(":2: `coordinator.retention`: a datetime"),
            "{date}"
        );
    }

    #[test]
    fn the_flag_wins_over_the_variable_and_an_empty_name_disables_the_file() {
        let named = locate(Some("a.toml".into()), Some("b.toml".into()), None, None);
        assert_eq!(named, Location::Named("a.toml".into()));
        assert_eq!(
            locate(None, Some("".into()), None, None),
            Location::Disabled
        );
        let searched = locate(None, None, None, Some("/home/u".into()));
        assert_eq!(
            searched,
            Location::Searched(vec![
                "/home/u/.config/essaim/essaim.toml".into(),
                "/etc/essaim/essaim.toml".into(),
            ])
        );
        let xdg = locate(None, None, Some("/x".into()), Some("/home/u".into()));
        let Location::Searched(paths) = xdg else {
            panic!("searched")
        };
        assert_eq!(paths[0], PathBuf::from("/x/essaim/essaim.toml"));
    }

    #[test]
    fn the_config_flag_is_found_before_clap_parses() {
        let argv = |words: &[&str]| -> Vec<OsString> { words.iter().map(Into::into).collect() };
        let found = config_flag(&argv(&["essaim", "worker", "--config", "w.toml"]));
        assert_eq!(found, Some("w.toml".into()));
        let equals = config_flag(&argv(&["essaim", "--config=c.toml", "jobs"]));
        assert_eq!(equals, Some("c.toml".into()));
        let after_dashes = config_flag(&argv(&["essaim", "submit", "--", "x", "--config", "y"]));
        assert_eq!(after_dashes, None);
    }

    #[test]
    fn a_named_file_that_is_missing_is_an_error_a_searched_one_is_not() {
        let missing = PathBuf::from("/nonexistent/essaim.toml");
        assert!(load(&Location::Named(missing.clone())).is_err());
        assert!(load(&Location::Searched(vec![missing])).unwrap().is_none());
    }
}
