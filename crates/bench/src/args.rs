//! A small command-line parser: `<scenario> [--key value | --key=value | --flag]...`.
//! Options are taken by name as each scenario reads them; whatever is left
//! over is an error, so a misspelt option never passes silently.

use crate::Result;
use std::collections::BTreeMap;
use std::str::FromStr;

/// The parsed command line.
#[derive(Debug, Clone, Default)]
pub struct Args {
    opts: BTreeMap<String, String>,
}

impl Args {
    /// Parses options (everything after the scenario name).
    pub fn parse(raw: &[String]) -> Result<Self> {
        let mut opts = BTreeMap::new();
        let mut i = 0;
        while i < raw.len() {
            let token = &raw[i];
            let Some(name) = token.strip_prefix("--") else {
                return Err(format!(
                    "unexpected argument '{token}' (options look like --name value)"
                )
                .into());
            };
            if name.is_empty() {
                return Err("empty option name '--'".into());
            }
            let (key, value) = match name.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => match raw.get(i + 1) {
                    Some(next) if !next.starts_with("--") => {
                        i += 1;
                        (name.to_owned(), next.clone())
                    }
                    _ => (name.to_owned(), "true".to_owned()),
                },
            };
            if opts.insert(key.clone(), value).is_some() {
                return Err(format!("option --{key} given twice").into());
            }
            i += 1;
        }
        Ok(Self { opts })
    }

    /// An empty set of options with these entries (used by `all`).
    pub fn with(entries: &[(&str, String)]) -> Self {
        Self {
            opts: entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    /// Removes and returns a raw option.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.opts.remove(key)
    }

    /// Removes and parses an option, or the default.
    pub fn get<T: FromStr>(&mut self, key: &str, default: T) -> Result<T> {
        match self.opts.remove(key) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| format!("--{key}: cannot parse '{raw}'").into()),
        }
    }

    /// Removes a boolean flag (`--flag`, `--flag=true|false`).
    pub fn flag(&mut self, key: &str) -> Result<bool> {
        self.get(key, false)
    }

    /// Fails on any option nobody asked for.
    pub fn finish(self) -> Result<()> {
        if self.opts.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self.opts.keys().map(|k| format!("--{k}")).collect();
        Err(format!("unknown option(s) for this scenario: {}", names.join(", ")).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_forms_and_rejects_leftovers() -> Result<()> {
        let mut a = Args::parse(&strings(&["--pairs", "10", "--window=4", "--quick"]))?;
        assert_eq!(a.get("pairs", 1u32)?, 10);
        assert_eq!(a.get("window", 1u32)?, 4);
        assert!(a.flag("quick")?);
        assert_eq!(a.get("duration", 2.5f64)?, 2.5);
        a.finish()?;
        let b = Args::parse(&strings(&["--nope", "1"]))?;
        assert!(b.finish().is_err());
        assert!(Args::parse(&strings(&["stray"])).is_err());
        assert!(Args::parse(&strings(&["--a", "1", "--a", "2"])).is_err());
        Ok(())
    }
}
