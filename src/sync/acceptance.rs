//! Validation before a version may be stored or activated: the bundle
//! schema (every field known, the format version), dangling transitions,
//! unknown intents/entities/targets, missing prompts (per language),
//! unreachable states and flows that loop without listening. The checks
//! themselves are the dialog engine's (`Bundle::validate`), so what sync
//! accepts is exactly what the engine can run; this module turns them into
//! a report and a refusal.

use crate::dialog::{Bundle, Issue, Severity};
use serde::{Deserialize, Serialize};

/// Validation results of a bundle, as `path: message` lines.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ValidationReport {
    /// Each refuses the version.
    pub errors: Vec<String>,
    /// Worth a look (unreachable states, unused intents...); do not refuse.
    pub warnings: Vec<String>,
}

impl ValidationReport {
    /// True when there are no errors (warnings allowed).
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Validate a bundle; errors and warnings as `path: message` lines.
pub fn check(bundle: &Bundle) -> ValidationReport {
    let issues: Vec<Issue> = bundle.validate();
    let lines = |sev: Severity| {
        issues
            .iter()
            .filter(|i| i.severity == sev)
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect()
    };
    ValidationReport {
        errors: lines(Severity::Error),
        warnings: lines(Severity::Warning),
    }
}
