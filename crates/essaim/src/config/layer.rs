//! The file as a layer of clap's own: every option gets its `ESSAIM_*` variable (named by
//! `names.rs`), and every setting of the file becomes the option's default, so that clap
//! decides the order it always decides: flag > variable > default, where the default is
//! the file's value, else the built-in one. clap also tells where each value came from
//! (`ArgMatches::value_source`), which `essaim config show` prints.
//!
//! Every value of the file is checked here with the option's own parser, for every verb
//! (not only the one that runs), so a mistake is refused with its line whatever the
//! verb, and unknown keys are refused too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::builder::BoolishValueParser;
use clap::{Arg, Command};

use super::check::{checked_values, is_flag};
use super::file::{ConfigError, ConfigFile, FileEntry, FileValue};
use super::names::{SettingName, setting_name};

/// One option of one verb and its setting.
#[derive(Clone, Debug)]
pub struct Setting {
    /// The verb that defines the option (`["index", "serve"]`; empty for global options).
    pub path: Vec<String>,
    /// clap's id of the option.
    pub arg_id: String,
    /// Its flag, without the dashes.
    pub long: String,
    /// Its key and variable.
    pub name: SettingName,
    /// Its value is a secret: masked when shown (clap's `hide_env_values`).
    pub secret: bool,
    /// The key of the file that holds the path of a file with the secret (`token_file`
    /// for `token`), when the verb has a `--X-file` option beside this secret `--X`.
    pub secret_file_key: Option<String>,
    /// This is such a `--X-file`: its key in the file is read into `--X`'s default.
    pub is_secret_file: bool,
}

/// Every setting of every verb of `command`, in the order of the command line.
pub fn catalogue(command: &Command) -> Vec<Setting> {
    let mut settings = Vec::new();
    collect(command, &mut Vec::new(), &mut settings);
    settings
}

fn collect(command: &Command, path: &mut Vec<String>, settings: &mut Vec<Setting>) {
    let first_of_verb = settings.len();
    for arg in command.get_arguments() {
        let Some((name, _origin)) = setting_name(path, arg) else {
            continue;
        };
        settings.push(Setting {
            path: path.clone(),
            arg_id: arg.get_id().to_string(),
            long: arg.get_long().unwrap_or_default().to_string(),
            name,
            secret: arg.is_hide_env_values_set(),
            secret_file_key: None,
            is_secret_file: false,
        });
    }
    link_secret_files(&mut settings[first_of_verb..]);
    // Hidden verbs (the benchmark drivers) are internal: no settings.
    for subcommand in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        path.push(subcommand.get_name().to_string());
        collect(subcommand, path, settings);
        path.pop();
    }
}

/// Ties each secret `--X` to a `--X-file` of the same verb.
fn link_secret_files(verb_settings: &mut [Setting]) {
    let file_keys: BTreeMap<String, String> = verb_settings
        .iter()
        .filter_map(|setting| {
            let secret_long = setting.long.strip_suffix("-file")?;
            Some((secret_long.to_string(), setting.name.key.clone()))
        })
        .collect();
    let mut linked = BTreeSet::new();
    for setting in verb_settings.iter_mut().filter(|setting| setting.secret) {
        setting.secret_file_key = file_keys.get(&setting.long).cloned();
        linked.extend(setting.secret_file_key.clone());
    }
    for setting in verb_settings.iter_mut() {
        setting.is_secret_file = linked.contains(&setting.name.key);
    }
}

/// What the file changes on one option.
struct Edit {
    env: Option<String>,
    default: Option<Vec<String>>,
    boolish: bool,
}

/// Returns `command` with every option's variable set and the file's values as defaults;
/// refuses an unknown key or an invalid value with its line.
pub fn layer(command: Command, file: Option<&ConfigFile>) -> Result<Command, ConfigError> {
    let settings = catalogue(&command);
    if let Some(file) = file {
        refuse_unknown_keys(file, &settings)?;
    }
    let mut edits: BTreeMap<Vec<String>, Vec<(String, Edit)>> = BTreeMap::new();
    for setting in &settings {
        let arg = find_arg(&command, setting);
        let edit = Edit {
            env: arg.get_env().is_none().then(|| setting.name.env.clone()),
            default: match file {
                Some(file) => file_default(file, setting, arg)?,
                None => None,
            },
            boolish: is_flag(arg),
        };
        let verb_edits = edits.entry(setting.path.clone()).or_default();
        verb_edits.push((setting.arg_id.clone(), edit));
    }
    Ok(apply(command, &[], &edits))
}

/// Returns the option a setting was collected from.
fn find_arg<'a>(command: &'a Command, setting: &Setting) -> &'a Arg {
    let mut verb = command;
    for name in &setting.path {
        verb = verb
            .find_subcommand(name)
            .expect("the setting was collected from this verb");
    }
    verb.get_arguments()
        .find(|arg| arg.get_id() == setting.arg_id.as_str())
        .expect("the setting was collected from this option")
}

fn apply(
    mut command: Command,
    path: &[String],
    edits: &BTreeMap<Vec<String>, Vec<(String, Edit)>>,
) -> Command {
    for (arg_id, edit) in edits.get(path).into_iter().flatten() {
        command = command.mut_arg(arg_id, |mut arg| {
            if let Some(env) = &edit.env {
                arg = arg.env(env.clone());
            }
            if edit.boolish {
                // `ESSAIM_WORKER_ALLOW_COMMANDS=1` (or yes, on, true) sets a flag.
                arg = arg.value_parser(BoolishValueParser::new());
            }
            if let Some(values) = &edit.default {
                // A required option the file gives is no longer required of the command line.
                arg = arg.default_values(values.clone()).required(false);
                if arg.is_hide_env_values_set() {
                    // A secret from the file must not appear in `--help` as a default.
                    arg = arg.hide_default_value(true);
                }
            }
            arg
        });
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|subcommand| subcommand.get_name().to_string())
        .collect();
    for name in names {
        let mut sub_path = path.to_vec();
        sub_path.push(name.clone());
        let has_edits = edits.keys().any(|key| key.starts_with(&sub_path));
        if has_edits {
            command = command.mut_subcommand(&name, |sub| apply(sub, &sub_path, edits));
        }
    }
    command
}

/// Refuses the keys of the file that name no setting, first line first.
fn refuse_unknown_keys(file: &ConfigFile, settings: &[Setting]) -> Result<(), ConfigError> {
    let mut known: BTreeSet<&str> = BTreeSet::new();
    for setting in settings {
        known.insert(&setting.name.key);
    }
    let mut unknown: Vec<(&String, &FileEntry)> = file
        .entries
        .iter()
        .filter(|(key, _)| !known.contains(key.as_str()))
        .collect();
    unknown.sort_by_key(|(_, entry)| entry.line);
    let Some((key, entry)) = unknown.first() else {
        return Ok(());
    };
    Err(ConfigError::at(
        &file.path,
        entry.line,
        unknown_key_reason(key, &known),
    ))
}

/// Says what is wrong with an unknown key, listing the keys of its section.
fn unknown_key_reason(key: &str, known: &BTreeSet<&str>) -> String {
    let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
    let in_section: Vec<&str> = known
        .iter()
        .filter_map(|known| known.rsplit_once('.'))
        .filter(|(known_section, _)| *known_section == section)
        .map(|(_, name)| name)
        .collect();
    if in_section.is_empty() {
        let mut sections: Vec<&str> = known
            .iter()
            .filter_map(|key| Some(key.rsplit_once('.')?.0))
            .collect();
        sections.dedup();
        let top_level = if section.is_empty() {
            format!("`{name}`")
        } else {
            format!("[{section}]")
        };
        return format!(
            "unknown section {top_level}; sections: {}",
            sections.join(", ")
        );
    }
    format!(
        "unknown key `{name}` in [{section}]; its keys: {}",
        in_section.join(", ")
    )
}

/// The default the file gives an option: its own key, or for a secret, the contents of
/// the file its `X_file` key names (a path relative to the configuration file).
fn file_default(
    file: &ConfigFile,
    setting: &Setting,
    arg: &Arg,
) -> Result<Option<Vec<String>>, ConfigError> {
    let own = file.entries.get(&setting.name.key);
    let secret_file = setting
        .secret_file_key
        .as_ref()
        .and_then(|key| Some((key, file.entries.get(key)?)));
    if let Some((file_key, path_entry)) = secret_file {
        if let Some(entry) = own {
            let reason = format!(
                "`{}` and `{file_key}` (line {}) exclude each other",
                setting.name.key, path_entry.line
            );
            return Err(ConfigError::at(&file.path, entry.line, reason));
        }
        return read_secret_file(file, file_key, path_entry).map(|secret| Some(vec![secret]));
    }
    let Some(entry) = own.filter(|_| !setting.is_secret_file) else {
        return Ok(None);
    };
    let values = checked_values(&setting.name.key, arg, &entry.value)
        .map_err(|reason| ConfigError::at(&file.path, entry.line, reason))?;
    Ok(Some(values))
}

/// Reads the secret of a `X_file` key: its first line.
fn read_secret_file(
    file: &ConfigFile,
    file_key: &str,
    entry: &FileEntry,
) -> Result<String, ConfigError> {
    let FileValue::Scalar(path) = &entry.value else {
        return Err(ConfigError::at(
            &file.path,
            entry.line,
            format!("`{file_key}` is a path"),
        ));
    };
    let base = file.path.parent().unwrap_or(Path::new("."));
    let secret_path = base.join(path);
    crate::secrets::read_secret(&secret_path)
        .map_err(|error| ConfigError::at(&file.path, entry.line, format!("`{file_key}`: {error}")))
}

#[cfg(test)]
mod tests {
    use super::super::file::parse;
    use super::*;
    use clap::ArgAction;

    /// A small command line with the shapes of essaim's: a verb with its own options,
    /// a shared option, a secret and its file, a flag, a list, a nested verb.
    fn command() -> Command {
        let worker = Command::new("worker")
            .arg(
                Arg::new("slots")
                    .long("slots")
                    .value_parser(clap::value_parser!(u32)),
            )
            .arg(Arg::new("name").long("name").required(true))
            .arg(
                Arg::new("allow_commands")
                    .long("allow-commands")
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("data_dirs")
                    .long("data-dir")
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("token")
                    .long("token")
                    .env("ESSAIM_TOKEN")
                    .hide_env_values(true),
            )
            .arg(
                Arg::new("token_file")
                    .long("token-file")
                    .env("ESSAIM_TOKEN_FILE"),
            );
        let serve = Command::new("serve").arg(
            Arg::new("balance")
                .long("balance")
                .value_parser(["random", "least-outstanding"]),
        );
        Command::new("essaim")
            .arg(
                Arg::new("log_json")
                    .long("log-json")
                    .env("ESSAIM_LOG_JSON")
                    .action(ArgAction::SetTrue)
                    .global(true),
            )
            .subcommand(worker)
            .subcommand(Command::new("index").subcommand(serve))
    }

    fn layered(text: &str) -> Result<Command, ConfigError> {
        let file = parse(Path::new("/etc/essaim/essaim.toml"), text).unwrap();
        layer(command(), Some(&file))
    }

    fn refusal(text: &str) -> String {
        layered(text).expect_err("the file is refused").to_string()
    }

    #[test]
    fn file_values_are_defaults_below_the_command_line() {
        let text = "[worker]\nslots = 4\nname = \"w1\"\nallow_commands = true\ndata_dir = [\"/a\", \"/b\"]\n[index.serve]\nbalance = \"random\"\n";
        let matches = layered(text)
            .unwrap()
            .try_get_matches_from(["essaim", "worker", "--slots", "2"])
            .unwrap();
        let (_, worker) = matches.subcommand().unwrap();
        assert_eq!(worker.get_one::<u32>("slots"), Some(&2), "the flag wins");
        assert_eq!(
            worker.get_one::<String>("name").unwrap(),
            "w1",
            "required, given by the file"
        );
        assert_eq!(
            worker.value_source("name"),
            Some(clap::parser::ValueSource::DefaultValue)
        );
        assert!(worker.get_flag("allow_commands"));
        let dirs: Vec<&String> = worker.get_many("data_dirs").unwrap().collect();
        assert_eq!(dirs, ["/a", "/b"]);
    }

    #[test]
    fn every_option_gets_its_variable() {
        let command = layered("").unwrap();
        let worker = command.find_subcommand("worker").unwrap();
        let env_of = |id: &str| {
            let arg = worker
                .get_arguments()
                .find(|arg| arg.get_id() == id)
                .unwrap();
            arg.get_env().unwrap().to_str().unwrap().to_string()
        };
        assert_eq!(env_of("slots"), "ESSAIM_WORKER_SLOTS");
        assert_eq!(
            env_of("token"),
            "ESSAIM_TOKEN",
            "a declared variable is kept"
        );
    }

    #[test]
    fn unknown_keys_and_invalid_values_are_refused_with_their_line() {
        assert_eq!(
            refusal("[worker]\nslots = 4\nslot = 5\n"),
            "/etc/essaim/essaim.toml:3: unknown key `slot` in [worker]; its keys: allow_commands, data_dir, name, slots"
        );
        assert!(
            refusal("[workr]\nslots = 1\n")
                .starts_with("/etc/essaim/essaim.toml:2: unknown section [workr]; sections: ")
        );
        let not_a_number = refusal("[worker]\nslots = \"many\"\n");
        assert!(
            not_a_number.starts_with(
                "/etc/essaim/essaim.toml:2: `worker.slots`: `many` is invalid: invalid digit"
            ),
            "{not_a_number}"
        );
        assert_eq!(
            refusal("[index.serve]\nbalance = \"fastest\"\n"),
            "/etc/essaim/essaim.toml:2: `index.serve.balance`: `fastest` is not one of random, least-outstanding"
        );
        assert_eq!(
            refusal("[worker]\nallow_commands = \"yes\"\n"),
            "/etc/essaim/essaim.toml:2: `worker.allow_commands` is a flag: true or false"
        );
        assert_eq!(
            refusal("[worker]\nslots = [1, 2]\n"),
            "/etc/essaim/essaim.toml:2: `worker.slots` takes one value, not an array"
        );
    }

    #[test]
    fn a_secret_comes_from_the_file_its_file_key_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let config_path = dir.path().join("essaim.toml");
        let file = parse(&config_path, "[cluster]\ntoken_file = \"token\"\n").unwrap();
        let matches = layer(command(), Some(&file))
            .unwrap()
            .try_get_matches_from(["essaim", "worker", "--name", "w"])
            .unwrap();
        let (_, worker) = matches.subcommand().unwrap();
        assert_eq!(worker.get_one::<String>("token").unwrap(), "s3cret");
        assert_eq!(
            worker.get_one::<String>("token_file"),
            None,
            "read once, here"
        );
        let both = parse(
            &config_path,
            "[cluster]\ntoken = \"a\"\ntoken_file = \"token\"\n",
        )
        .unwrap();
        let error = layer(command(), Some(&both)).unwrap_err().to_string();
        assert!(
            error.ends_with(
                ":2: `cluster.token` and `cluster.token_file` (line 3) exclude each other"
            ),
            "{error}"
        );
        let missing = parse(&config_path, "[cluster]\ntoken_file = \"nope\"\n").unwrap();
        let error = layer(command(), Some(&missing)).unwrap_err().to_string();
        assert!(
            error.contains(":2: `cluster.token_file`: cannot read"),
            "{error}"
        );
    }
}
