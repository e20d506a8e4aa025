//! Configuration files for the servers (`--config FILE`, TOML). A key is a
//! flag's name with `_` or `-` (`max_payload_bytes`); the precedence is
//! flag > environment > file > default; an unknown key is refused naming
//! it; `--print-config` shows the effective configuration, where each value
//! came from, with secrets masked.

use std::ffi::OsString;
use std::path::Path;

use clap::ArgMatches;
use clap::parser::ValueSource;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path}: {error}")]
    Parse {
        /// The file.
        path: String,
        /// The error.
        error: String,
    },
    /// A key that names no setting, or one that cannot be set in a file.
    #[error("{path}: unknown key '{key}' ({why})")]
    UnknownKey {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// Why.
        why: &'static str,
    },
    /// A value of a type a flag cannot take.
    #[error("{path}: key '{key}': {why}")]
    BadValue {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// Why.
        why: &'static str,
    },
}

/// Parses the process's arguments into `T`, filling what neither a flag
/// nor the environment sets from the `--config` file. Exits with clap's
/// message on bad flags, and with the file's error on a bad file. With
/// `--print-config`, prints the effective configuration (masking the
/// `secrets` ids) and exits.
pub fn parse<T: clap::Parser>(secrets: &[&str]) -> T {
    let args: Vec<OsString> = std::env::args_os().collect();
    // A first look, to find the file and what flags and variables set (a
    // required setting may be in the file only, so errors wait).
    let matches = T::command()
        .ignore_errors(true)
        .try_get_matches_from(args.clone())
        .unwrap_or_else(|e| e.exit());
    let (extra, sources) = match matches.get_one::<std::path::PathBuf>("config") {
        None => (Vec::new(), Vec::new()),
        Some(path) => match from_file(&T::command(), &matches, path) {
            Ok(found) => found,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        },
    };
    let mut all = args;
    all.extend(extra);
    let matches = T::command().get_matches_from(all);
    if matches.get_flag("print_config") {
        print!("{}", render(&T::command(), &matches, &sources, secrets));
        std::process::exit(0);
    }
    T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The flags the file adds (for settings no flag or variable set), and
/// the ids it set.
fn from_file(
    cmd: &clap::Command,
    matches: &ArgMatches,
    path: &Path,
) -> Result<(Vec<OsString>, Vec<String>), ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: shown.clone(),
        error,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: shown.clone(),
            error: e.to_string(),
        })?;
    let mut extra = Vec::new();
    let mut set = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        let unknown = |why| ConfigError::UnknownKey {
            path: shown.clone(),
            key: key.clone(),
            why,
        };
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id().as_str() == id)
            .ok_or_else(|| unknown("no such setting"))?;
        let (Some(long), Some(_)) = (arg.get_long(), arg.get_env()) else {
            return Err(unknown("a one-shot flag, not a setting"));
        };
        if matches!(
            matches.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let bad = |why| ConfigError::BadValue {
            path: shown.clone(),
            key: key.clone(),
            why,
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    _ => Err(bad("a list holds strings or numbers")),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => return Err(bad("must be a string, number, boolean or list")),
        };
        let takes_value = arg.get_action().takes_values();
        if takes_value {
            extra.push(OsString::from(format!("--{long}={text}")));
        } else if text == "true" {
            extra.push(OsString::from(format!("--{long}")));
        } else if text != "false" {
            return Err(bad("must be true or false"));
        }
        set.push(id);
    }
    Ok((extra, set))
}

/// `key = value  # source` for every setting; secrets masked.
fn render(
    cmd: &clap::Command,
    matches: &ArgMatches,
    from_file: &[String],
    secrets: &[&str],
) -> String {
    let mut out = String::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.get_env().is_none() || matches!(id, "config" | "help" | "version") {
            continue;
        }
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = if values.is_empty() {
            "(unset)".to_string()
        } else if secrets.contains(&id) {
            "\"<redacted>\"".to_string()
        } else {
            format!("{:?}", values.join(","))
        };
        let source = match matches.value_source(id) {
            _ if from_file.iter().any(|f| f == id) => "file",
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        out.push_str(&format!("{id} = {value}  # {source}\n"));
    }
    out
}
