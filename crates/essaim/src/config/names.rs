//! The one owner of the mapping between a file key, a flag and an environment variable.
//!
//! The rule, for an option `--long-name` of the verb `essaim a b`:
//! - its own setting: key `a.b.long_name` (section `[a.b]`, name `long_name`), variable
//!   `ESSAIM_A_B_LONG_NAME`. `essaim worker --slots` is `[worker] slots` and
//!   `ESSAIM_WORKER_SLOTS`; `essaim index serve --listen` is `[index.serve] listen`.
//! - a shared setting, read by several verbs, is declared by the option's `env` attribute
//!   in the code: `ESSAIM_<SECTION>_<NAME>` for a section of [`SHARED_SECTIONS`]
//!   (`ESSAIM_S3_ENDPOINT` is `[s3] endpoint`, `ESSAIM_MAPREDUCE_REDUCERS` is
//!   `[mapreduce] reducers`), or a variable of [`NAMED_SETTINGS`] (names older than the
//!   file, kept: `ESSAIM_TOKEN` is `[cluster] token`).
//!
//! An option whose declared variable follows neither rule is a mistake, found by the
//! unit test that walks the whole command line.

use clap::Arg;

/// Sections of settings shared by several verbs, declared by an option's variable
/// `ESSAIM_<SECTION>_<NAME>`.
pub const SHARED_SECTIONS: &[&str] = &[
    "cluster",
    "log",
    "mapreduce",
    "s3",
    "nats",
    "kafka",
    "postgres",
    // `ESSAIM_REGISTRY_URL`: where pipelines' `predict` operators find the model registry.
    "registry",
];

/// Variables whose names predate the file, with their keys.
pub const NAMED_SETTINGS: &[(&str, &str)] = &[
    ("ESSAIM_COORDINATOR", "cluster.coordinator"),
    ("ESSAIM_TOKEN", "cluster.token"),
    ("ESSAIM_TOKEN_FILE", "cluster.token_file"),
    ("ESSAIM_CONNECT_TIMEOUT", "cluster.connect_timeout"),
    // The OpenTelemetry specification's own variable.
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "log.otlp_endpoint"),
    ("ESSAIM_ETCD", "coordinator.etcd"),
    ("ESSAIM_ADVERTISE_URL", "coordinator.advertise_url"),
    ("ESSAIM_CLUSTER", "coordinator.cluster"),
    ("ESSAIM_ADVERTISED_HOST", "worker.advertised_host"),
    ("ESSAIM_SUPERSEDE_KEY", "submit.supersede_key"),
    ("ESSAIM_ACTOR", "models.actor"),
];

/// The file key and environment variable of one option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingName {
    /// `section.name`, as in the file.
    pub key: String,
    /// The `ESSAIM_*` variable.
    pub env: String,
}

/// How the name of an option was decided (for the consistency test).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Derived from the verb and the flag.
    Own,
    /// Declared shared through its variable.
    Shared,
    /// Declared with a variable that follows no rule: a mistake in the code.
    Unruled,
}

/// Returns the section of the verb `path` (`["index", "serve"]` → `index.serve`).
pub fn section_of(path: &[String]) -> String {
    path.join(".")
}

/// Returns the name of `arg` of the verb `path`, or `None` for what has no setting:
/// positional arguments, hidden options, `--help`, `--version`, `--config`.
pub fn setting_name(path: &[String], arg: &Arg) -> Option<(SettingName, Origin)> {
    let long = arg.get_long()?;
    let no_setting = arg.is_hide_set() || matches!(long, "help" | "version" | "config");
    if no_setting {
        return None;
    }
    let own = own_name(path, long);
    let Some(declared) = arg.get_env().and_then(|env| env.to_str()) else {
        return Some((own, Origin::Own));
    };
    // Shared first: `--log-json` of the root is `[log] json`, not a top-level `log_json`.
    if let Some(key) = shared_key(declared) {
        let name = SettingName {
            key,
            env: declared.to_string(),
        };
        return Some((name, Origin::Shared));
    }
    if declared == own.env {
        return Some((own, Origin::Own));
    }
    let unruled = SettingName {
        key: own.key,
        env: declared.to_string(),
    };
    Some((unruled, Origin::Unruled))
}

/// The name an option gets from its verb and flag.
fn own_name(path: &[String], long: &str) -> SettingName {
    let name = long.replace('-', "_");
    let key = if path.is_empty() {
        name
    } else {
        format!("{}.{name}", section_of(path))
    };
    let env = format!("ESSAIM_{}", key.replace('.', "_").to_ascii_uppercase());
    SettingName { key, env }
}

/// The key of a declared shared variable, if it follows a rule.
fn shared_key(env: &str) -> Option<String> {
    if let Some((_, key)) = NAMED_SETTINGS.iter().find(|(named, _)| *named == env) {
        return Some((*key).to_string());
    }
    let rest = env.strip_prefix("ESSAIM_")?;
    SHARED_SECTIONS.iter().find_map(|section| {
        let name = rest
            .strip_prefix(&section.to_ascii_uppercase())?
            .strip_prefix('_')?;
        let well_formed = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        well_formed.then(|| format!("{section}.{}", name.to_ascii_lowercase()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| word.to_string()).collect()
    }

    fn name_of(words: &[&str], arg: Arg) -> (SettingName, Origin) {
        setting_name(&path(words), &arg).expect("an option with a setting")
    }

    #[test]
    fn an_option_of_its_own_is_named_after_its_verb_and_flag() {
        let (name, origin) = name_of(&["worker"], Arg::new("slots").long("slots"));
        assert_eq!(name.key, "worker.slots");
        assert_eq!(name.env, "ESSAIM_WORKER_SLOTS");
        assert_eq!(origin, Origin::Own);
        let (nested, _) = name_of(&["index", "serve"], Arg::new("hedge").long("hedge-budget"));
        assert_eq!(nested.key, "index.serve.hedge_budget");
        assert_eq!(nested.env, "ESSAIM_INDEX_SERVE_HEDGE_BUDGET");
        // Declaring the variable the rule gives changes nothing.
        let declared = Arg::new("token").long("token").env("ESSAIM_INGEST_TOKEN");
        assert_eq!(name_of(&["ingest"], declared).1, Origin::Own);
    }

    #[test]
    fn a_declared_variable_names_a_shared_setting() {
        let endpoint = Arg::new("s3_endpoint")
            .long("s3-endpoint")
            .env("ESSAIM_S3_ENDPOINT");
        let (name, origin) = name_of(&["run"], endpoint);
        assert_eq!((name.key.as_str(), origin), ("s3.endpoint", Origin::Shared));
        let token = Arg::new("token").long("token").env("ESSAIM_TOKEN");
        assert_eq!(name_of(&["worker"], token).0.key, "cluster.token");
        let stray = Arg::new("x").long("x").env("MY_X");
        assert_eq!(name_of(&["jobs"], stray).1, Origin::Unruled);
    }

    #[test]
    fn positionals_hidden_options_and_config_have_no_setting() {
        let words = path(&["submit"]);
        assert!(setting_name(&words, &Arg::new("job")).is_none());
        let hidden = Arg::new("lifeline").long("lifeline-parent").hide(true);
        assert!(setting_name(&words, &hidden).is_none());
        assert!(setting_name(&[], &Arg::new("config").long("config")).is_none());
    }
}
