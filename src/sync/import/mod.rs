//! Importers: a cloud bot's export -> one canonical bundle (`understudy-bundle/1`).
//!
//! Every importer reads an [`ExportFiles`] (a zip or a directory, already
//! cleaned of junk entries, URL-decoded and re-rooted at the export's own
//! top folder) and writes a [`Bundle`] plus [`Warnings`] for everything the
//! local engine cannot do as the cloud does. Nothing is dropped silently:
//! docs/sync.md lists each mapping and each warning.
//!
//! Shared here, so that the four importers agree: the archive reader,
//! language codes and per-language maps, placeholder and SSML conversion,
//! system entities (`@sys.*`, `AMAZON.*`, Duckling), and name sanitising.

pub mod dialogflow_cx;
pub mod dialogflow_es;
mod files;
pub mod lex_v2;
pub mod rasa;

mod languages;
mod problems;
mod system_entities;
mod texts;
pub use languages::*;
pub use problems::*;
pub use system_entities::*;
pub use texts::*;

pub use files::ExportFiles;

use crate::dialog::bundle::{Entity, Localized, Text, TransferTarget};
use crate::dialog::{Bundle, Issue, Severity};
use regex::Regex;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

/// What a bot export was written by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// A Dialogflow CX JSON package (`agent.json` + `flows/`).
    DialogflowCx,
    /// A Dialogflow ES export (`agent.json` + `intents/`).
    DialogflowEs,
    /// An Amazon Lex V2 `LexJson` export (`Manifest.json` + `BotLocales/`).
    LexV2,
    /// A Rasa project (`domain.yml` + `data/`).
    Rasa,
    /// Already our own format (`understudy-bundle/1`).
    Bundle,
}

impl ExportFormat {
    /// The format's name in messages and logs (`Dialogflow CX`, `Amazon Lex V2`...).
    pub fn label(self) -> &'static str {
        match self {
            ExportFormat::DialogflowCx => "Dialogflow CX",
            ExportFormat::DialogflowEs => "Dialogflow ES",
            ExportFormat::LexV2 => "Amazon Lex V2",
            ExportFormat::Rasa => "Rasa",
            ExportFormat::Bundle => "understudy-bundle/1",
        }
    }
}

/// Something in the export the local bot does differently or not at all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct ImportWarning {
    /// Where in the export (a file, and a field or name inside it).
    pub at: String,
    /// What the local bot does differently, and what it does instead.
    pub message: String,
}

impl std::fmt::Display for ImportWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

impl ImportWarning {
    /// What kind of gap this is, for summaries ("webhook: 12"): the
    /// constructs a designer asks about, by the words every importer uses
    /// in its messages.
    pub fn kind(&self) -> &'static str {
        let m = self.message.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
        if has(&["junk entry"]) {
            "junk"
        } else if m.starts_with("test story") {
            // Named by the story, whose name may say anything ("transfer money").
            "test"
        } else if has(&[
            "webhook",
            "lambda",
            "code hook",
            "custom action",
            "action server",
        ]) {
            "webhook/code"
        } else if has(&[
            "generative",
            "generator",
            "playbook",
            "llm",
            "data store",
            "knowledge",
        ]) {
            "generative"
        } else if has(&["handoff", "transfer"]) {
            "handoff"
        } else if has(&["variant", "variation"]) {
            "variants"
        } else if has(&["ssml"]) {
            "ssml"
        } else if has(&["system entity", "entity", "slot type", "expansion", "fuzzy"]) {
            "entity"
        } else if has(&["condition", "branch"]) {
            "condition"
        } else if has(&["event", "handler", "no-match", "no-input"]) {
            "event"
        } else if has(&["preset", "parameter", "slot", "form"]) {
            "parameter"
        } else if has(&[
            "payload",
            "card",
            "button",
            "platform",
            "image",
            "google assistant",
            "facebook",
            "audio",
        ]) {
            "channel"
        } else if has(&["no text in", "language"]) {
            "language"
        } else if has(&["test"]) {
            "test"
        } else {
            "other"
        }
    }
}

/// Collects warnings, each once.
#[derive(Debug, Default)]
pub struct Warnings(BTreeSet<ImportWarning>);

impl Warnings {
    /// Add a warning at `at`; the same warning given twice is kept once.
    pub fn warn(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.0.insert(ImportWarning {
            at: at.into(),
            message: message.into(),
        });
    }
    /// The warnings, sorted by where they are.
    pub fn into_vec(self) -> Vec<ImportWarning> {
        self.0.into_iter().collect()
    }
}

/// Counts a designer checks against the cloud console.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImportStats {
    /// Intents.
    pub intents: usize,
    /// Training phrases, all languages.
    pub phrases: usize,
    /// Distinct static prompts in the default language (what gets pre-rendered).
    pub prompts: usize,
    /// Flow states.
    pub states: usize,
    /// Entities, system entities included.
    pub entities: usize,
    /// Test conversations.
    pub tests: usize,
    /// Language codes, the default first.
    pub languages: Vec<String>,
}

impl ImportStats {
    /// The counts of `bundle`.
    pub fn of(bundle: &Bundle) -> ImportStats {
        let phrases = bundle
            .intents
            .values()
            .map(|i| i.phrases.values().iter().map(|p| p.len()).sum::<usize>())
            .sum();
        let mut languages = vec![bundle.bot.language.clone()];
        languages.extend(bundle.bot.languages.iter().cloned());
        ImportStats {
            intents: bundle.intents.len(),
            phrases,
            prompts: bundle.static_prompts(bundle.language()).len(),
            states: bundle.flow.states.len(),
            entities: bundle.entities.len(),
            tests: bundle.tests.len(),
            languages,
        }
    }
}

/// A bundle made from an export, with what could not be carried over.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The bundle, validated (an export with validation errors is refused).
    pub bundle: Bundle,
    /// The exporter that wrote the export.
    pub format: ExportFormat,
    /// What could not be carried over exactly, sorted.
    pub warnings: Vec<ImportWarning>,
    /// Counts to check against the cloud console.
    pub stats: ImportStats,
    /// Time to detect the format, import and validate, in milliseconds.
    pub ms: f64,
}

/// Why an export cannot be imported. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The export's file or folder cannot be read.
    #[error("cannot read the export {origin}: {detail}")]
    Read {
        /// The path of the export.
        origin: String,
        /// The I/O error.
        detail: String,
    },
    /// The export is not a readable zip (empty, damaged, cut off or too big).
    #[error("the export {origin} is not a readable zip archive ({detail}); it is corrupt or was cut off while downloading: export or download it again")]
    Corrupt {
        /// The export's path or URL.
        origin: String,
        /// What is wrong with the archive.
        detail: String,
    },
    /// No importer knows the export (or it is a CX binary blob).
    #[error("the export {origin} is not a bot export this build knows: {detail}. Expected a Dialogflow CX package (agent.json + flows/), a Dialogflow ES zip (agent.json + intents/), an Amazon Lex V2 LexJson zip (Manifest.json + BotLocales/), a Rasa project (domain.yml + data/), or an understudy-bundle/1 file")]
    UnknownFormat {
        /// The export's path or URL.
        origin: String,
        /// What the export holds, or why it is refused.
        detail: String,
    },
    /// A file of the export does not parse.
    #[error("{format} export {origin}: {file} does not parse: {detail} (the file is damaged or not from this exporter: export again)")]
    Parse {
        /// The exporter's name ([`ExportFormat::label`]).
        format: &'static str,
        /// The export's path or URL.
        origin: String,
        /// The file's path inside the export.
        file: String,
        /// The parser's error.
        detail: String,
    },
    /// The export lacks something the importer needs.
    #[error("{format} export {origin}: {detail}")]
    Missing {
        /// The exporter's name ([`ExportFormat::label`]).
        format: &'static str,
        /// The export's path or URL.
        origin: String,
        /// What is missing or wrong, and what to do.
        detail: String,
    },
    /// The imported bundle fails validation, so it cannot serve.
    #[error("{format} export {origin} imports into a bundle that cannot serve:\n{issues}")]
    Invalid {
        /// The exporter's name ([`ExportFormat::label`]).
        format: &'static str,
        /// The export's path or URL.
        origin: String,
        /// The validation errors, one line each, or why the bundle file does not parse.
        issues: String,
    },
}

/// Import whatever `path` is: a zip, a directory, or a bundle file.
pub fn import_path(path: &Path) -> Result<Imported, ImportError> {
    let files = ExportFiles::open(path)?;
    import_files(files)
}

/// Import an export held in memory (an HTTP download): a zip, or a bundle file.
pub fn import_bytes(bytes: &[u8], origin: &str) -> Result<Imported, ImportError> {
    let files = ExportFiles::from_bytes(bytes, origin)?;
    import_files(files)
}

/// Detect the format and run its importer; the result is validated (errors
/// refuse the export, naming each problem) and counted.
pub fn import_files(files: ExportFiles) -> Result<Imported, ImportError> {
    let started = Instant::now();
    let format = detect(&files)?;
    let origin = files.origin().to_string();
    let mut warnings = Warnings::default();
    for junk in files.skipped() {
        warnings.warn(
            junk.clone(),
            "not part of the bot (junk entry in the archive); ignored",
        );
    }
    let _span = tracing::info_span!("import", format = format.label(), origin = %origin).entered();
    let mut bundle = match format {
        ExportFormat::DialogflowCx => dialogflow_cx::import(&files, &mut warnings)?,
        ExportFormat::DialogflowEs => dialogflow_es::import(&files, &mut warnings)?,
        ExportFormat::LexV2 => lex_v2::import(&files, &mut warnings)?,
        ExportFormat::Rasa => rasa::import(&files, &mut warnings)?,
        ExportFormat::Bundle => {
            let (name, bytes) = files.single_bundle().expect("detect() saw the bundle file");
            let text = String::from_utf8_lossy(bytes);
            Bundle::parse(&text, &format!("{origin} ({name})")).map_err(|e| {
                ImportError::Invalid {
                    format: format.label(),
                    origin: origin.clone(),
                    issues: e.to_string(),
                }
            })?
        }
    };
    if format != ExportFormat::Bundle {
        bundle
            .bot
            .source
            .insert("importer".into(), format.label().into());
        bundle.bot.source.insert("export".into(), origin.clone());
    }
    let errors: Vec<Issue> = bundle
        .validate()
        .into_iter()
        .filter(|i| i.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        return Err(ImportError::Invalid {
            format: format.label(),
            origin,
            issues: describe_problems(format, &bundle, &errors),
        });
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let stats = ImportStats::of(&bundle);
    let warnings = warnings.into_vec();
    crate::metrics::observe_ms("understudy_sync_stage_seconds", &[("stage", "import")], ms);
    tracing::info!(
        intents = stats.intents,
        phrases = stats.phrases,
        prompts = stats.prompts,
        states = stats.states,
        warnings = warnings.len(),
        ms,
        "export imported"
    );
    Ok(Imported {
        bundle,
        format,
        warnings,
        stats,
        ms,
    })
}

/// Which exporter wrote these files.
pub fn detect(files: &ExportFiles) -> Result<ExportFormat, ImportError> {
    if files.single_bundle().is_some() {
        return Ok(ExportFormat::Bundle);
    }
    if files.get_ci("Manifest.json").is_some()
        || files
            .paths()
            .any(|p| p.contains("/BotLocales/") || p.starts_with("BotLocales/"))
    {
        return Ok(ExportFormat::LexV2);
    }
    if files.get("domain.yml").is_some()
        || files.get("domain.yaml").is_some()
        || files.paths().any(|p| p.starts_with("domain/"))
    {
        return Ok(ExportFormat::Rasa);
    }
    if let Some(agent) = files.get("agent.json") {
        if files.paths().any(|p| p.starts_with("flows/")) {
            return Ok(ExportFormat::DialogflowCx);
        }
        let json: serde_json::Value = serde_json::from_slice(agent).unwrap_or_default();
        if json.get("defaultLanguageCode").is_some() && json.get("language").is_none() {
            return Ok(ExportFormat::DialogflowCx);
        }
        return Ok(ExportFormat::DialogflowEs);
    }
    let listing: Vec<&str> = files.paths().take(8).collect();
    Err(ImportError::UnknownFormat {
        origin: files.origin().into(),
        detail: if listing.is_empty() {
            "it holds no files".into()
        } else {
            format!("it holds {}", listing.join(", "))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssml_becomes_speakable_text() {
        let s = r#"<speak>Hi there, a table at <say-as interpret-as="characters">OMG</say-as> Garden?</speak>"#;
        assert_eq!(strip_ssml(s).unwrap(), "Hi there, a table at O M G Garden?");
        assert_eq!(strip_ssml("no tags here"), None);
        assert_eq!(
            strip_ssml("<speak>Fish &amp; chips<break time='1s'/>.</speak>").unwrap(),
            "Fish & chips."
        );
    }

    #[test]
    fn cloud_parameters_become_placeholders() {
        assert_eq!(
            convert_placeholders("for $date at $time.original").unwrap(),
            "for {date} at {time}"
        );
        assert_eq!(
            convert_placeholders("Hi $session.params.given-name!").unwrap(),
            "Hi {given-name}!"
        );
        assert!(convert_placeholders("$request.generative.answer").is_err());
        assert!(convert_placeholders("as #ctx.name said").is_err());
    }

    #[test]
    fn language_codes_keep_only_what_distinguishes() {
        let l = Languages::new("en_US", ["de_DE"]);
        assert_eq!((l.default.as_str(), l.code("de_DE").as_str()), ("en", "de"));
        let l = Languages::new("en-US", ["en-GB", "fr"]);
        assert_eq!(l.all(), vec!["en-US", "en-GB", "fr"]);
    }

    #[test]
    fn per_language_values_fill_gaps_from_the_default() {
        let langs = Languages::new("en", ["de"]);
        let mut texts = PerLang::<String>::default();
        *texts.entry("en") = "Hello".into();
        let mut w = Warnings::default();
        let t = localized_text(texts, &langs, "x", &mut w).unwrap();
        assert_eq!(t.get("de", "en").unwrap(), "Hello");
        assert_eq!(w.into_vec().len(), 1);
    }
}
