//! Names of models and aliases, and references to a version (`spam-filter@production`,
//! `spam-filter@3`, `spam-filter`), checked once at the edge so that the store and the
//! API only ever see valid ones.
//!
//! Why rules at all: names become URL path segments, redb keys and file names of
//! downloads; a name with `/`, `..` or spaces would be ambiguous in every one of them.
//! An alias must start with a letter so that `NAME@3` is always version 3, never an
//! alias called `3`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest model or alias name.
pub const MAX_NAME_LENGTH: usize = 64;

/// The stages `promote` moves versions between (ordinary aliases otherwise).
pub const STAGES: [&str; 2] = ["staging", "production"];

/// The reference that names a model's newest version that is not archived.
pub const LATEST: &str = "latest";

/// Why a name or reference is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a model name.
    #[error(
        "invalid model name `{0}`: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
    )]
    Model(String),
    /// Not an alias name.
    #[error(
        "invalid alias `{0}`: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter (`latest` is reserved)"
    )]
    Alias(String),
    /// Not a version number.
    #[error("invalid version `{0}`: versions are numbered from 1")]
    Version(String),
}

fn valid_characters(text: &str) -> bool {
    let length_ok = (1..=MAX_NAME_LENGTH).contains(&text.len());
    let characters_ok = text
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    length_ok && characters_ok
}

/// A valid model name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelName(String);

impl ModelName {
    /// Checks `text` and returns it as a model name.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let starts_well = text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
        if valid_characters(text) && starts_well {
            Ok(Self(text.to_string()))
        } else {
            Err(NameError::Model(text.to_string()))
        }
    }

    /// Returns the name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid alias name (`production`, `champion`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AliasName(String);

impl AliasName {
    /// Checks `text` and returns it as an alias name.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let starts_with_letter = text.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
        if valid_characters(text) && starts_with_letter && text != LATEST {
            Ok(Self(text.to_string()))
        } else {
            Err(NameError::Alias(text.to_string()))
        }
    }

    /// Returns the name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Tells whether this alias is one of the [`STAGES`].
    pub fn is_stage(&self) -> bool {
        STAGES.contains(&self.0.as_str())
    }
}

macro_rules! string_conversions {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(text: String) -> Result<Self, NameError> {
                Self::parse(&text)
            }
        }
        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(text: &str) -> Result<Self, NameError> {
                Self::parse(text)
            }
        }
    };
}
string_conversions!(ModelName);
string_conversions!(AliasName);

/// Which version of a model: a number, what an alias names, or the newest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRef {
    /// Version `n` (from 1).
    Number(u64),
    /// The version an alias names now.
    Alias(AliasName),
    /// The newest version that is not archived.
    Latest,
}

impl VersionRef {
    /// Parses `3`, `latest` or an alias.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text == LATEST {
            return Ok(Self::Latest);
        }
        if text.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
            return parse_version_number(text).map(Self::Number);
        }
        AliasName::parse(text).map(Self::Alias)
    }
}

impl fmt::Display for VersionRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(number) => write!(formatter, "{number}"),
            Self::Alias(alias) => write!(formatter, "{alias}"),
            Self::Latest => formatter.write_str(LATEST),
        }
    }
}

/// Parses a version number (from 1).
pub fn parse_version_number(text: &str) -> Result<u64, NameError> {
    match text.parse::<u64>() {
        Ok(number) if number >= 1 => Ok(number),
        _ => Err(NameError::Version(text.to_string())),
    }
}

/// `NAME`, `NAME@VERSION` or `NAME@ALIAS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// The model.
    pub model: ModelName,
    /// The version ([`VersionRef::Latest`] when the reference names none).
    pub version: VersionRef,
}

impl ModelRef {
    /// Parses `NAME[@VERSION|@ALIAS]`.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let (model, version) = match text.split_once('@') {
            Some((model, version)) => (model, VersionRef::parse(version)?),
            None => (text, VersionRef::Latest),
        };
        Ok(Self {
            model: ModelName::parse(model)?,
            version,
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}@{}", self.model, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_path_safe() {
        for good in ["spam-filter", "a", "Model_2.v1", &"x".repeat(64)] {
            assert!(ModelName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            ".hidden",
            "a/b",
            "..",
            "a b",
            "é",
            &"x".repeat(65),
            "a@b",
        ] {
            assert!(ModelName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aliases_start_with_a_letter_and_latest_is_reserved() {
        assert!(AliasName::parse("production").unwrap().is_stage());
        assert!(!AliasName::parse("champion").unwrap().is_stage());
        for bad in ["3", "1a", "latest", "", "a/b"] {
            assert!(AliasName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references_name_a_number_an_alias_or_the_latest() {
        let parsed = ModelRef::parse("spam-filter@production").unwrap();
        assert_eq!(parsed.model.as_str(), "spam-filter");
        assert_eq!(
            parsed.version,
            VersionRef::Alias(AliasName::parse("production").unwrap())
        );
        assert_eq!(
            ModelRef::parse("m@12").unwrap().version,
            VersionRef::Number(12)
        );
        assert_eq!(ModelRef::parse("m").unwrap().version, VersionRef::Latest);
        assert_eq!(
            ModelRef::parse("m@latest").unwrap().version,
            VersionRef::Latest
        );
        for bad in ["m@0", "m@", "@3", "m@1x", "m@-1"] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ModelRef::parse("m@7").unwrap().to_string(), "m@7");
    }
}
