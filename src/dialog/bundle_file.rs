//! Reading a bundle: the text parsed (YAML or JSON), its `format` checked
//! before anything else, then validated (`super::validate`): errors refuse
//! the bundle with every problem listed, warnings are logged.

use super::bundle::{Bundle, DEMO_BUNDLE_YAML, FORMAT_V1};
use super::validate::{Issue, Severity};
use serde::Deserialize;
use serde_norway::Value;
use std::path::Path;

/// Why a bundle cannot be used. Each message names the file, the field and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle file could not be read.
    #[error("cannot read the bot bundle {path}: {source} (check `--bundle` or `[bot] bundle` in the configuration)")]
    Read {
        /// The file's path.
        path: String,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The text does not parse as a bundle (bad YAML/JSON, a wrong field, no `format`).
    #[error(
        "bot bundle {origin} does not parse: {message}\n  (fix the field named above; docs/bundle-format.md describes every field)"
    )]
    Syntax {
        /// Names the bundle: its file path, or e.g. "built-in demo bundle".
        origin: String,
        /// What the parser found wrong.
        message: String,
    },
    /// The `format` is not the one this build reads.
    #[error(
        "bot bundle {origin} has format `{found}`, this build reads `{FORMAT_V1}` (set `format: {FORMAT_V1}` or re-export the bundle with this version)"
    )]
    Format {
        /// Names the bundle: its file path, or e.g. "built-in demo bundle".
        origin: String,
        /// The bundle's `format` value.
        found: String,
    },
    /// Validation found errors.
    #[error("bot bundle {origin} is invalid:\n{}", render_issues(issues))]
    Invalid {
        /// Names the bundle: its file path, or e.g. "built-in demo bundle".
        origin: String,
        /// The validation errors (warnings are only logged).
        issues: Vec<Issue>,
    },
}

fn render_issues(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Bundle {
    /// Parse and validate a bundle from YAML or JSON text; `origin` names it in errors.
    /// Validation errors fail; warnings are logged (see [`Bundle::validate`]).
    pub fn parse(text: &str, origin: &str) -> Result<Bundle, BundleError> {
        #[derive(Deserialize)]
        struct Header {
            format: Option<Value>,
        }
        let syntax = |e: serde_norway::Error| BundleError::Syntax {
            origin: origin.to_string(),
            message: e.to_string(),
        };
        // The format first: a future version's new fields must not read as typos.
        let header: Header = serde_norway::from_str(text).map_err(syntax)?;
        match header.format.as_ref().and_then(Value::as_str) {
            Some(FORMAT_V1) => {}
            Some(other) => {
                return Err(BundleError::Format {
                    origin: origin.into(),
                    found: other.into(),
                })
            }
            None => {
                return Err(BundleError::Syntax {
                    origin: origin.into(),
                    message: format!("missing `format: {FORMAT_V1}` at the top"),
                })
            }
        }
        let bundle: Bundle = serde_norway::from_str(text).map_err(syntax)?;
        let issues = bundle.validate();
        for warning in issues.iter().filter(|i| i.severity == Severity::Warning) {
            tracing::warn!(bundle = origin, "{warning}");
        }
        let errors: Vec<Issue> = issues
            .into_iter()
            .filter(|i| i.severity == Severity::Error)
            .collect();
        if errors.is_empty() {
            Ok(bundle)
        } else {
            Err(BundleError::Invalid {
                origin: origin.into(),
                issues: errors,
            })
        }
    }

    /// Read, parse and validate a bundle file.
    pub fn load(path: &Path) -> Result<Bundle, BundleError> {
        let text = std::fs::read_to_string(path).map_err(|source| BundleError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Bundle::parse(&text, &path.display().to_string())
    }

    /// The built-in demo bot (retail customer service).
    pub fn demo() -> Bundle {
        // The demo is tested (tests/dialog_bundle.rs); a failure here is a build defect.
        Bundle::parse(DEMO_BUNDLE_YAML, "built-in demo bundle")
            .expect("the built-in demo bundle is valid")
    }

    /// The bundle as YAML (what the sync store writes and hashes).
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a bundle always serializes")
    }
}
