//! `essaim.toml`: one file for the settings of every role — coordinator, worker, clients,
//! connectors — under the environment and the command line, as Spark's
//! `spark-defaults.conf` is under `spark-submit`'s flags.
//!
//! Each setting is an option of a verb: `[worker] slots = 4` is `essaim worker --slots 4`
//! and `ESSAIM_WORKER_SLOTS=4` (the naming rule and the shared sections are in
//! `names.rs`, its one owner). The order is flag > `ESSAIM_*` variable > file >
//! built-in default, decided by clap itself: the file's values become the options'
//! defaults (`layer.rs`). So there is no second definition of any setting, and a new
//! option is in the file the day it is added.
//!
//! The file is `--config PATH`, else `ESSAIM_CONFIG`, else the first of
//! `./essaim.toml`, `$XDG_CONFIG_HOME/essaim/essaim.toml` (`~/.config/…`) and
//! `/etc/essaim/essaim.toml`; an empty name means no file. A key the command line does
//! not know, or a value its option refuses, is refused with the file, the line and the
//! reason, whichever verb runs.

mod check;
mod file;
mod layer;
mod names;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use file::{ConfigError, ConfigFile};
pub use layer::{Setting, catalogue, layer};

/// The file this process read, as an absolute path (`None`: no file).
static LOADED: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Finds and reads the configuration file of this process, from its command line
/// (`--config`) and environment.
pub fn load_for_process(argv: &[OsString]) -> Result<Option<ConfigFile>, ConfigError> {
    let location = file::locate(
        file::config_flag(argv),
        std::env::var_os("ESSAIM_CONFIG"),
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    );
    let loaded = file::load(&location)?;
    let absolute = loaded
        .as_ref()
        .map(|file| std::path::absolute(&file.path).unwrap_or_else(|_| file.path.clone()));
    let _set_once = LOADED.set(absolute);
    Ok(loaded)
}

/// Returns the file this process read, if any: processes it starts (the workers of a
/// local cluster) are given the same one.
pub fn loaded_path() -> Option<&'static Path> {
    LOADED.get().and_then(|path| path.as_deref())
}

#[cfg(test)]
mod tests {
    use super::names::{Origin, setting_name};
    use clap::CommandFactory;

    /// Walks the whole command line of the binary: every option has a setting whose
    /// variable follows the rule of `names.rs`, and no two settings of different meaning
    /// share a key.
    #[test]
    fn every_option_of_every_verb_follows_the_naming_rule() {
        let command = crate::Cli::command();
        let mut unruled = Vec::new();
        let mut envs_by_key: std::collections::BTreeMap<String, String> = Default::default();
        let mut stack = vec![(Vec::<String>::new(), &command)];
        while let Some((path, verb)) = stack.pop() {
            for arg in verb.get_arguments() {
                let Some((name, origin)) = setting_name(&path, arg) else {
                    continue;
                };
                if origin == Origin::Unruled {
                    unruled.push(format!(
                        "{} --{}: {}",
                        path.join(" "),
                        arg.get_long().unwrap_or_default(),
                        name.env
                    ));
                }
                let env = envs_by_key
                    .entry(name.key.clone())
                    .or_insert(name.env.clone());
                assert_eq!(*env, name.env, "key {} has two variables", name.key);
            }
            for sub in verb.get_subcommands() {
                let mut sub_path = path.clone();
                sub_path.push(sub.get_name().to_string());
                stack.push((sub_path, sub));
            }
        }
        assert!(
            unruled.is_empty(),
            "variables that follow no rule: {unruled:#?}"
        );
        for key in [
            "worker.slots",
            "coordinator.listen",
            "cluster.coordinator",
            "cluster.token",
            "s3.endpoint",
        ] {
            assert!(envs_by_key.contains_key(key), "{key} missing");
        }
    }

    /// The real command line accepts the file's values of the real options.
    #[test]
    fn the_real_command_line_takes_a_file() {
        let text = "version = 1\n[cluster]\ncoordinator = \"http://c1:7070,http://c2:7070\"\n[worker]\nslots = 3\nallow_commands = true\n";
        let file = super::file::parse(std::path::Path::new("essaim.toml"), text).unwrap();
        let command = super::layer(crate::Cli::command(), Some(&file)).unwrap();
        let matches = command.try_get_matches_from(["essaim", "worker"]).unwrap();
        let (_, worker) = matches.subcommand().unwrap();
        assert_eq!(worker.get_one::<u32>("slots"), Some(&3));
        assert!(worker.get_flag("allow_commands"));
        assert_eq!(
            worker.get_one::<String>("coordinator").unwrap(),
            "http://c1:7070,http://c2:7070"
        );
        let typo = super::file::parse(std::path::Path::new("essaim.toml"), "[worker]\nslotz = 3\n")
            .unwrap();
        let error = super::layer(crate::Cli::command(), Some(&typo)).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("essaim.toml:2: unknown key `slotz` in [worker]"),
            "{error}"
        );
    }
}
