//! `essaim config show [VERB] [-- FLAGS]`: the effective configuration of a verb — every
//! setting, its value, and where the value came from (flag, variable, file and line,
//! built-in default) — with secrets masked.
//!
//! It asks clap, with the same layered command line the verb itself would be parsed
//! with (see `crate::config`), rather than repeating the order of the layers here: what
//! it prints is what the verb would get.

use std::process::ExitCode;

use clap::parser::ValueSource;
use serde_json::{Value, json};

use crate::Layered;
use crate::client::usage;
use crate::config::{ConfigFile, Setting, catalogue};
use crate::output::{OutputFormat, print_json};

/// What `essaim config` shows.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Print each setting of a verb (default: of every verb), its value and its source:
    /// `flag`, `env` (an ESSAIM_* variable), `file` (with its line) or `default`.
    Show(ShowArgs),
}

/// Options of `essaim config show`.
#[derive(clap::Args, Debug)]
struct ShowArgs {
    /// The verb, e.g. `worker`, `coordinator`, `submit`, `index serve` (default: every
    /// verb).
    #[arg(value_name = "VERB")]
    verb: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
    /// The verb's own flags, after `--`, to see which of them win:
    /// `essaim config show worker -- --slots 2`.
    #[arg(last = true, value_name = "FLAGS")]
    flags: Vec<String>,
}

/// Where a setting's value came from, highest layer first.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Flag,
    Env,
    File { position: String },
    Default,
    Unset,
}

/// One line of the configuration shown.
#[derive(Clone, Debug)]
struct Row {
    key: String,
    flag: String,
    env: String,
    value: Option<Vec<String>>,
    source: Source,
}

/// Shows the effective configuration.
pub fn run(args: Args, layered: Layered) -> anyhow::Result<ExitCode> {
    let Action::Show(show) = args.action;
    let settings = catalogue(&layered.command);
    let mut command = layered.command;
    // Built, so that global options appear on every verb as they do when it runs.
    command.build();
    let verbs = if show.verb.is_empty() {
        if !show.flags.is_empty() {
            return Err(usage(
                "flags after `--` need a verb: essaim config show VERB -- FLAGS",
            ));
        }
        verbs_with_settings(&settings)
    } else {
        vec![show.verb.clone()]
    };
    let mut shown = Vec::new();
    for verb in verbs {
        let rows = effective(
            &command,
            &settings,
            &verb,
            &show.flags,
            layered.file.as_ref(),
        )?;
        shown.push((verb.join(" "), rows));
    }
    match show.output {
        OutputFormat::Json => print_json(&as_json(&shown, layered.file.as_ref())),
        OutputFormat::Text => print_text(&shown, layered.file.as_ref()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Every verb that has options of its own, in the order of the command line.
fn verbs_with_settings(settings: &[Setting]) -> Vec<Vec<String>> {
    let mut verbs: Vec<Vec<String>> = Vec::new();
    for setting in settings {
        let new_verb = !setting.path.is_empty() && !verbs.contains(&setting.path);
        if new_verb {
            verbs.push(setting.path.clone());
        }
    }
    verbs
}

/// Parses `flags` as the verb's command line (missing required options forgiven) and
/// returns each of its settings with its value and source.
fn effective(
    command: &clap::Command,
    settings: &[Setting],
    verb_path: &[String],
    flags: &[String],
    file: Option<&ConfigFile>,
) -> anyhow::Result<Vec<Row>> {
    let mut verb = command;
    for name in verb_path {
        verb = verb.find_subcommand(name).ok_or_else(|| {
            usage(format!(
                "no verb `{}`; verbs with settings: {}",
                verb_path.join(" "),
                verbs_with_settings(settings)
                    .iter()
                    .map(|verb| verb.join(" "))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    }
    let argv = std::iter::once(verb.get_name().to_string()).chain(flags.iter().cloned());
    let matches = verb
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(argv)
        .map_err(|error| usage(error.to_string()))?;
    let mut rows = Vec::new();
    for arg in verb.get_arguments() {
        let Some(setting) = setting_of(settings, verb_path, arg) else {
            continue;
        };
        let id = arg.get_id().as_str();
        let value = matches.get_raw(id).map(|values| {
            let values = values.map(|value| value.to_string_lossy().into_owned());
            if setting.secret {
                values.map(|_| "******".to_string()).collect()
            } else {
                values.map(|value| mask_url_password(&value)).collect()
            }
        });
        rows.push(Row {
            key: setting.name.key.clone(),
            flag: format!("--{}", setting.long),
            env: setting.name.env.clone(),
            value,
            source: source_of(matches.value_source(id), setting, file),
        });
    }
    Ok(rows)
}

/// The setting of an option of the verb: its own, or a global option's of an ancestor.
fn setting_of<'a>(
    settings: &'a [Setting],
    verb_path: &[String],
    arg: &clap::Arg,
) -> Option<&'a Setting> {
    let id = arg.get_id().as_str();
    let own = settings
        .iter()
        .find(|setting| setting.path == verb_path && setting.arg_id == id);
    if own.is_some() || !arg.is_global_set() {
        return own;
    }
    settings
        .iter()
        .filter(|setting| setting.arg_id == id && verb_path.starts_with(&setting.path))
        .max_by_key(|setting| setting.path.len())
}

fn source_of(source: Option<ValueSource>, setting: &Setting, file: Option<&ConfigFile>) -> Source {
    match source {
        Some(ValueSource::CommandLine) => Source::Flag,
        Some(ValueSource::EnvVariable) => Source::Env,
        Some(ValueSource::DefaultValue) => {
            let from_file = file.and_then(|file| {
                let keys = std::iter::once(&setting.name.key).chain(&setting.secret_file_key);
                let line = keys
                    .filter_map(|key| file.entries.get(key))
                    .map(|entry| entry.line)
                    .next()?;
                Some(Source::File {
                    position: file.position(line),
                })
            });
            from_file.unwrap_or(Source::Default)
        }
        _ => Source::Unset,
    }
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Self::Flag => "flag",
            Self::Env => "env",
            Self::File { .. } => "file",
            Self::Default => "default",
            Self::Unset => "unset",
        }
    }

    /// The flag, variable or file line the value came from.
    fn detail(&self, row: &Row) -> String {
        match self {
            Self::Flag => row.flag.clone(),
            Self::Env => row.env.clone(),
            Self::File { position } => position.clone(),
            Self::Default | Self::Unset => String::new(),
        }
    }
}

fn as_json(shown: &[(String, Vec<Row>)], file: Option<&ConfigFile>) -> Value {
    let verbs: Vec<Value> = shown
        .iter()
        .map(|(verb, rows)| {
            let settings: Vec<Value> = rows
                .iter()
                .map(|row| {
                    json!({
                        "key": row.key, "flag": row.flag, "env": row.env,
                        "value": row.value, "source": row.source.name(),
                        "from": row.source.detail(row),
                    })
                })
                .collect();
            json!({"verb": verb, "settings": settings})
        })
        .collect();
    json!({"file": file.map(|file| file.path.display().to_string()), "verbs": verbs})
}

fn print_text(shown: &[(String, Vec<Row>)], file: Option<&ConfigFile>) {
    match file {
        Some(file) => crate::outln!("# file: {}", file.path.display()),
        None => crate::outln!("# file: none"),
    }
    for (verb, rows) in shown {
        crate::outln!("# essaim {verb}");
        let key_width = rows.iter().map(|row| row.key.len()).max().unwrap_or(0);
        for row in rows {
            let value = match &row.value {
                None => "-".to_string(),
                Some(values) => values.join(","),
            };
            let source = format!("{} {}", row.source.name(), row.source.detail(row));
            crate::outln!("{:<key_width$}  {value:<24} {}", row.key, source.trim_end());
        }
    }
}

/// Masks the password of a URL's user information (`postgres://u:secret@host/db` →
/// `postgres://u:******@host/db`); other text is returned as it is.
fn mask_url_password(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return value.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:******@{host}{tail}"),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod mask_tests {
    use super::mask_url_password;

    #[test]
    fn passwords_in_urls_are_masked_and_nothing_else_is() {
        assert_eq!(
            mask_url_password("postgres://essaim:hunter2@db:5432/essaim?sslmode=disable"),
            "postgres://essaim:******@db:5432/essaim?sslmode=disable"
        );
        assert_eq!(
            mask_url_password("nats://user@nats:4222"),
            "nats://user@nats:4222"
        );
        assert_eq!(
            mask_url_password("http://127.0.0.1:7070"),
            "http://127.0.0.1:7070"
        );
        assert_eq!(mask_url_password("/var/lib/essaim"), "/var/lib/essaim");
        assert_eq!(mask_url_password("http://h/p@q:r"), "http://h/p@q:r");
    }
}
