//! Checking a value of the file with the option it sets, before clap sees it as a
//! default: with the option's own parser, so the file accepts exactly what the command
//! line accepts, and the refusal names the key rather than a flag.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, Command};

use super::file::FileValue;

/// Returns an option's values as clap will read them, after checking them with the
/// option's own parser; or the reason they are refused, naming the key.
pub fn checked_values(key: &str, arg: &Arg, value: &FileValue) -> Result<Vec<String>, String> {
    if is_flag(arg) {
        let FileValue::Boolean(flag) = value else {
            return Err(format!("`{key}` is a flag: true or false"));
        };
        return Ok(vec![flag.to_string()]);
    }
    let values = match value {
        FileValue::Scalar(text) => vec![text.clone()],
        FileValue::Boolean(flag) => vec![flag.to_string()],
        FileValue::List(items) if takes_several(arg) => items.clone(),
        FileValue::List(_) => return Err(format!("`{key}` takes one value, not an array")),
    };
    parse_with(arg, &values).map_err(|reason| format!("`{key}`: {reason}"))?;
    Ok(values)
}

pub fn is_flag(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

fn takes_several(arg: &Arg) -> bool {
    let repeated = matches!(arg.get_action(), ArgAction::Append);
    let several_at_once = arg
        .get_num_args()
        .is_some_and(|range| range.max_values() > 1);
    repeated || several_at_once || arg.get_value_delimiter().is_some()
}

/// Runs the option's value parser on `values` through a command of that option alone
/// (its relations to other options are not checked: they are the command line's).
fn parse_with(arg: &Arg, values: &[String]) -> Result<(), String> {
    let mut probe = Arg::new("value")
        .long("value")
        .action(ArgAction::Append)
        .value_parser(arg.get_value_parser().clone());
    if let Some(delimiter) = arg.get_value_delimiter() {
        probe = probe.value_delimiter(delimiter);
    }
    let argv = std::iter::once("probe".to_string())
        .chain(values.iter().map(|value| format!("--value={value}")));
    match Command::new("probe").arg(probe).try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(error) => Err(reason_of(&error)),
    }
}

/// The reason clap refused a value, without clap's framing about the command line.
fn reason_of(error: &clap::Error) -> String {
    let offending = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => format!("`{value}`"),
        _ => "the value".to_string(),
    };
    if error.kind() == ErrorKind::InvalidValue
        && let Some(ContextValue::Strings(valid)) = error.get(ContextKind::ValidValue)
    {
        return format!("{offending} is not one of {}", valid.join(", "));
    }
    if let Some(source) = std::error::Error::source(error) {
        return format!("{offending} is invalid: {source}");
    }
    let rendered = error.to_string();
    let first_line = rendered.lines().next().unwrap_or_default();
    first_line.trim_start_matches("error: ").to_string()
}
