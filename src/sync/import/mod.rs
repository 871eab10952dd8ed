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
    DialogflowCx,
    DialogflowEs,
    LexV2,
    Rasa,
    /// Already our own format (`understudy-bundle/1`).
    Bundle,
}

impl ExportFormat {
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
    pub fn warn(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.0.insert(ImportWarning {
            at: at.into(),
            message: message.into(),
        });
    }
    pub fn into_vec(self) -> Vec<ImportWarning> {
        self.0.into_iter().collect()
    }
}

/// Counts a designer checks against the cloud console.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImportStats {
    pub intents: usize,
    /// Training phrases, all languages.
    pub phrases: usize,
    /// Distinct static prompts in the default language (what gets pre-rendered).
    pub prompts: usize,
    pub states: usize,
    pub entities: usize,
    pub tests: usize,
    pub languages: Vec<String>,
}

impl ImportStats {
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
    pub bundle: Bundle,
    pub format: ExportFormat,
    pub warnings: Vec<ImportWarning>,
    pub stats: ImportStats,
    pub ms: f64,
}

/// Why an export cannot be imported. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the export {origin}: {detail}")]
    Read { origin: String, detail: String },
    #[error("the export {origin} is not a readable zip archive ({detail}); it is corrupt or was cut off while downloading: export or download it again")]
    Corrupt { origin: String, detail: String },
    #[error("the export {origin} is not a bot export this build knows: {detail}. Expected a Dialogflow CX package (agent.json + flows/), a Dialogflow ES zip (agent.json + intents/), an Amazon Lex V2 LexJson zip (Manifest.json + BotLocales/), a Rasa project (domain.yml + data/), or an understudy-bundle/1 file")]
    UnknownFormat { origin: String, detail: String },
    #[error("{format} export {origin}: {file} does not parse: {detail} (the file is damaged or not from this exporter: export again)")]
    Parse {
        format: &'static str,
        origin: String,
        file: String,
        detail: String,
    },
    #[error("{format} export {origin}: {detail}")]
    Missing {
        format: &'static str,
        origin: String,
        detail: String,
    },
    #[error("{format} export {origin} imports into a bundle that cannot serve:\n{issues}")]
    Invalid {
        format: &'static str,
        origin: String,
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
    crate::metrics::observe_ms("understudy_sync_stage_ms", &[("stage", "import")], ms);
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

/// Validation errors of an imported bundle for the bot's designer: one
/// line each, named as the cloud tool names things (page, intent), the
/// known names listed once at the end, and whose gap each one is. The
/// cloud accepted the bot, so a problem is the export's only when it
/// refers to something the export does not contain; anything else is a
/// construct this importer does not carry over yet.
pub fn describe_problems(format: ExportFormat, bundle: &Bundle, errors: &[Issue]) -> String {
    static KNOWN: OnceLock<Regex> = OnceLock::new();
    static STATE: OnceLock<Regex> = OnceLock::new();
    let known_re =
        KNOWN.get_or_init(|| Regex::new(r" \((known: .*?|none are defined)\)(;|$)").unwrap());
    let state_re = STATE.get_or_init(|| Regex::new(r"(state |did you mean )`([^`]*)`").unwrap());
    let mut seen = BTreeSet::new();
    let mut lines = vec![];
    let (mut ours, mut theirs) = (0, 0);
    let mut dangling_states = false;
    for issue in errors {
        let message = known_re.replace(&issue.message, "$2");
        let message = state_re
            .replace_all(&message, |c: &regex::Captures| {
                if &c[1] == "state " || bundle.flow.states.contains_key(&c[2]) {
                    format!(
                        "{}{}",
                        &c[1].replace("state ", ""),
                        cloud_state(format, &c[2])
                    )
                } else {
                    c[0].to_string()
                }
            })
            .into_owned();
        let place = cloud_place(format, &issue.path);
        // A page's listening copy ("P (done)") repeats the page's own problems.
        let key = (
            place.split(", route").next().unwrap_or(&place).to_string(),
            message.clone(),
        );
        if !seen.insert(key) {
            continue;
        }
        let missing = issue.message.contains("does not exist");
        let builtin = missing && refers_to_builtin(&issue.message);
        let whose = if missing && !builtin {
            theirs += 1;
            "export"
        } else {
            ours += 1;
            "Understudy"
        };
        dangling_states |= missing && issue.path.ends_with(".to");
        lines.push(format!("  - [{whose}] {place}: {message}"));
    }
    if dangling_states {
        let names: Vec<String> = bundle
            .flow
            .states
            .keys()
            .filter(|n| !n.ends_with(" (done)"))
            .map(|n| cloud_state(format, n))
            .collect();
        let shown = names
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = names.len().saturating_sub(12);
        lines.push(format!(
            "  known: {shown}{}",
            if more > 0 {
                format!(" ... and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if theirs > 0 {
        lines.push(format!("{theirs} problem(s) [export]: the export refers to something it does not contain; export the whole bot again (a partial export or a hand-edited file does this)."));
    }
    if ours > 0 {
        lines.push(format!("{ours} problem(s) [Understudy]: the cloud bot is fine; this build does not carry that construct over yet. Report it with this output; `understudy chat --bundle <export>` cannot help until then."));
    }
    lines.join("\n")
}

/// A missing name that looks like a cloud platform's built-in target
/// (`END_FLOW`, `End Session`, `AMAZON.FallbackIntent`) rather than a
/// page or intent of the bot.
fn refers_to_builtin(message: &str) -> bool {
    let Some(name) = message.split('`').nth(1) else {
        return false;
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let caps = last.len() > 2
        && last
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
    caps || last.starts_with("AMAZON.")
        || ["End ", "Current Page", "Previous Page", "Start Page"]
            .iter()
            .any(|p| last.starts_with(p))
}

/// A bundle field path (`flow.states.F/P.transitions[2].to`) in the cloud
/// tool's words (`page "P" of flow "F", route 3`).
fn cloud_place(format: ExportFormat, path: &str) -> String {
    let Some(rest) = path.strip_prefix("flow.states.") else {
        return path.to_string();
    };
    // State names may contain dots; the field part starts at the last `.transitions`/`.collect`/...
    let fields = [".transitions[", ".collect[", ".say", ".reprompt", ".lookup"];
    let cut = fields
        .iter()
        .filter_map(|f| rest.find(f))
        .min()
        .unwrap_or(rest.len());
    let (state, field) = rest.split_at(cut);
    let field = if let Some(i) = field.strip_prefix(".transitions[") {
        let n: usize = i
            .split(']')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        format!(", route {}", n + 1)
    } else if let Some(i) = field.strip_prefix(".collect[") {
        let n: usize = i
            .split(']')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        format!(", form parameter {}", n + 1)
    } else {
        String::new()
    };
    format!("{}{field}", cloud_state(format, state))
}

/// A state of an imported bundle as the cloud tool calls it.
fn cloud_state(format: ExportFormat, state: &str) -> String {
    let state = state.strip_suffix(" (done)").unwrap_or(state);
    match format {
        ExportFormat::DialogflowCx => match state.rsplit_once('/') {
            Some((flow, "Start")) => format!("start of flow \"{flow}\""),
            Some((flow, page)) => format!("page \"{page}\" (flow \"{flow}\")"),
            None => format!("page \"{state}\""),
        },
        ExportFormat::DialogflowEs | ExportFormat::LexV2 => format!("intent \"{state}\""),
        ExportFormat::Rasa => format!("story \"{state}\""),
        ExportFormat::Bundle => format!("state `{state}`"),
    }
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

// ---------------------------------------------------------------- languages

/// Canonical language codes for an export's locales: the primary subtag
/// alone (`en_US` -> `en`) unless two locales share it (`en-US`, `en-GB`).
/// The built-in prompts and the speech engines know languages by `en`, `de`.
#[derive(Debug, Clone)]
pub struct Languages {
    map: BTreeMap<String, String>,
    pub default: String,
}

impl Languages {
    pub fn new<'a>(default: &str, all: impl IntoIterator<Item = &'a str>) -> Languages {
        let mut raw: BTreeSet<String> = all.into_iter().map(str::to_string).collect();
        raw.insert(default.to_string());
        let primary = |l: &str| l.split(['_', '-']).next().unwrap_or(l).to_ascii_lowercase();
        let mut per_primary: BTreeMap<String, usize> = BTreeMap::new();
        for l in &raw {
            *per_primary.entry(primary(l)).or_default() += 1;
        }
        let map = raw
            .iter()
            .map(|l| {
                let p = primary(l);
                let canon = if per_primary[&p] == 1 {
                    p
                } else {
                    let mut parts = l.split(['_', '-']);
                    let first = parts.next().unwrap_or("").to_ascii_lowercase();
                    std::iter::once(first)
                        .chain(parts.map(|s| s.to_ascii_uppercase()))
                        .collect::<Vec<_>>()
                        .join("-")
                };
                (l.clone(), canon)
            })
            .collect::<BTreeMap<_, _>>();
        let default = map[default].clone();
        Languages { map, default }
    }

    /// The canonical code of a locale as the export writes it.
    pub fn code(&self, raw: &str) -> String {
        self.map
            .get(raw)
            .cloned()
            .unwrap_or_else(|| Languages::new(raw, []).default)
    }

    /// Every language but the default, for `bot.languages`.
    pub fn others(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.map.values().filter(|l| **l != self.default).collect();
        set.into_iter().cloned().collect()
    }

    pub fn all(&self) -> Vec<String> {
        std::iter::once(self.default.clone())
            .chain(self.others())
            .collect()
    }
}

/// Per-language values being gathered: turned into `Localized` once all are in.
#[derive(Debug, Clone)]
pub struct PerLang<T>(pub BTreeMap<String, T>);

impl<T> Default for PerLang<T> {
    fn default() -> Self {
        PerLang(BTreeMap::new())
    }
}

impl<T: Clone + Default> PerLang<T> {
    pub fn entry(&mut self, lang: &str) -> &mut T {
        self.0.entry(lang.to_string()).or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One value when the bundle has one language; else what each language
    /// gives (phrases and entity values: a missing language falls back to
    /// the default one at run time, nothing to fill in).
    pub fn partial(mut self, langs: &Languages) -> Localized<T> {
        if langs.others().is_empty() {
            return Localized::One(
                self.0
                    .remove(&langs.default)
                    .or_else(|| self.0.into_values().next())
                    .unwrap_or_default(),
            );
        }
        Localized::ByLang(self.0)
    }

    /// One value when only the default language has one; else a map with
    /// every language of the bundle (missing ones take the default
    /// language's value, reported by `missing`).
    pub fn localize(
        mut self,
        langs: &Languages,
        mut missing: impl FnMut(&str),
    ) -> Option<Localized<T>> {
        if self.0.is_empty() {
            return None;
        }
        if self.0.len() == 1 && self.0.contains_key(&langs.default) && langs.others().is_empty() {
            return self.0.remove(&langs.default).map(Localized::One);
        }
        let fallback = self
            .0
            .get(&langs.default)
            .or_else(|| self.0.values().next())
            .cloned()
            .unwrap_or_default();
        for lang in langs.all() {
            if let std::collections::btree_map::Entry::Vacant(e) = self.0.entry(lang) {
                missing(e.key());
                e.insert(fallback.clone());
            }
        }
        Some(Localized::ByLang(self.0))
    }
}

/// A prompt from per-language texts; languages the cloud bot did not
/// translate speak the default language's words, with a warning.
pub fn localized_text(
    texts: PerLang<String>,
    langs: &Languages,
    at: &str,
    w: &mut Warnings,
) -> Option<Text> {
    let mut lacking = vec![];
    let text = texts.localize(langs, |l| lacking.push(l.to_string()))?;
    if !lacking.is_empty() {
        w.warn(
            at,
            format!(
                "no text in {}: the {} text is used there",
                lacking.join(", "),
                langs.default
            ),
        );
    }
    Some(text)
}

// ---------------------------------------------------------------- texts

fn ssml_tag_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?s)<[^>]*>").unwrap())
}

fn say_as_chars_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"(?s)<say-as[^>]*interpret-as\s*=\s*["'](?:characters|spell-out|verbatim)["'][^>]*>(.*?)</say-as>"#).unwrap()
    })
}

/// Plain speakable text from SSML (`<speak>Hi <break/>there</speak>`):
/// spelled-out `say-as` becomes spaced letters, other tags go. `None` when
/// the text was not SSML.
pub fn strip_ssml(text: &str) -> Option<String> {
    if !text.contains('<') || !ssml_tag_re().is_match(text) {
        return None;
    }
    let spelled = say_as_chars_re().replace_all(text, |c: &regex::Captures| {
        c[1].chars()
            .filter(|ch| !ch.is_whitespace())
            .map(String::from)
            .collect::<Vec<_>>()
            .join(" ")
    });
    let plain = ssml_tag_re().replace_all(&spelled, " ");
    let plain = plain
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'");
    Some(squash_spaces(&plain))
}

/// Collapse whitespace runs and fix the space a removed tag leaves before punctuation.
pub fn squash_spaces(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(joined.len());
    for ch in joined.chars() {
        if matches!(ch, '.' | ',' | '?' | '!' | ';' | ':') && out.ends_with(' ') {
            out.pop();
        }
        out.push(ch);
    }
    out
}

fn cloud_param_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\$(?:session\.params\.|page\.params\.|intent\.params\.)?([A-Za-z_][A-Za-z0-9_\-]*)(?:\.(?:original|resolved))?")
            .unwrap()
    })
}

/// Cloud parameter references -> our `{slot}` placeholders: Dialogflow's
/// `$session.params.x`, `$x`, `$x.original`. `Err` names what the local bot
/// cannot fill (generated or retrieved text, system functions).
pub fn convert_placeholders(text: &str) -> Result<String, String> {
    static CONTEXT_REF: OnceLock<Regex> = OnceLock::new();
    for unsupported in ["$request.", "$sys.func", "$flow.", "$conversation"] {
        if text.contains(unsupported) {
            return Err(format!(
                "it is filled at run time by the cloud ({unsupported}...)"
            ));
        }
    }
    // Dialogflow ES context references: `#context.param`.
    if CONTEXT_REF
        .get_or_init(|| Regex::new(r"#[A-Za-z_][\w-]*\.[\w-]+").unwrap())
        .is_match(text)
    {
        return Err("it reads a context parameter (#context.param)".into());
    }
    Ok(cloud_param_re().replace_all(text, "{$1}").into_owned())
}

/// A cloud name as an intent name here: whitespace becomes `_`.
pub fn ident(name: &str) -> String {
    let out: String = name.split_whitespace().collect::<Vec<_>>().join("_");
    if out.is_empty() || out == "none" {
        format!("intent_{out}")
    } else {
        out
    }
}

/// A slot name here: no spaces or braces.
pub fn slot_ident(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '{' || c == '}' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

// ---------------------------------------------------------------- system entities

/// Built-in entity types of the cloud platforms (`@sys.number`,
/// `AMAZON.Number`, Duckling `number`) as our entity kinds. Dates and times
/// have no resolver here: the caller's words are kept as said (`any`), with
/// a warning. Returns (entity name in the bundle, entity, approximation note).
pub fn system_entity(name: &str) -> Option<(String, Entity, Option<&'static str>)> {
    let key = name.trim_start_matches('@').to_ascii_lowercase();
    let key = key.trim_start_matches("sys.").trim_start_matches("amazon.");
    let email = r"([A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,})";
    let (entity_name, entity, note) = match key {
        "any" | "freeformcapture" | "alphanumeric" | "searchquery" => ("any", Entity::Any, None),
        "number" | "number-integer" | "cardinal" | "ordinal" | "number-sequence" => {
            ("number", Entity::Digits { min_digits: 1, max_digits: 12 }, None)
        }
        "phone-number" | "phonenumber" => ("phone_number", Entity::Digits { min_digits: 7, max_digits: 15 }, None),
        "email" | "emailaddress" => ("email", Entity::Regex { pattern: email.into() }, None),
        "date" | "date-time" | "date-period" | "time" | "time-period" | "duration" | "age" | "unit-currency"
        | "currency" | "percentage" | "given-name" | "last-name" | "person" | "firstname" | "lastname"
        | "geo-city" | "geo-country" | "geo-state" | "address" | "city" | "country" | "state" | "street_address"
        | "postaladdress" | "location" | "url" => (
            key,
            Entity::Any,
            Some("no resolver here: the caller's words are kept as said (\"next Tuesday\", \"half past three\")"),
        ),
        _ => return None,
    };
    Some((
        format!("sys_{}", entity_name.replace(['-', '.'], "_")),
        entity,
        note,
    ))
}

/// Register a system entity in the bundle being built; returns its name
/// here, or `None` (with a warning) for a type this build has no mapping for.
pub fn use_system_entity(
    entities: &mut BTreeMap<String, Entity>,
    cloud: &str,
    at: &str,
    w: &mut Warnings,
) -> Option<String> {
    match system_entity(cloud) {
        Some((name, entity, note)) => {
            if let Some(note) = note {
                w.warn(at, format!("system entity {cloud} approximated: {note}"));
            }
            entities.entry(name.clone()).or_insert(entity);
            Some(name)
        }
        None => {
            w.warn(at, format!("system entity {cloud} has no equivalent here; the caller's words are kept as said"));
            entities.entry("sys_any".into()).or_insert(Entity::Any);
            Some("sys_any".into())
        }
    }
}

/// Where a handoff goes when the export names no number or URI (live agent
/// handoff, Rasa's handoff action): `.invalid` never resolves, so the site
/// must point it somewhere (`[sip] transfer_target`); the importer warns.
pub const PLACEHOLDER_AGENT_URI: &str = "sip:agent@handoff.invalid";

/// The transfer target for a number or URI, added once and named after
/// its order (`transfer`, `transfer_2`...).
pub fn transfer_target(
    targets: &mut BTreeMap<String, TransferTarget>,
    uri: &str,
    description: &str,
) -> String {
    if let Some((name, _)) = targets.iter().find(|(_, t)| t.uri == uri) {
        return name.clone();
    }
    let name = if targets.is_empty() {
        "transfer".to_string()
    } else {
        format!("transfer_{}", targets.len() + 1)
    };
    targets.insert(
        name.clone(),
        TransferTarget {
            uri: uri.into(),
            description: Some(description.into()),
        },
    );
    name
}

/// Phrases said when a cloud bot's built-in yes/no confirmation is
/// imported (Lex confirmations): the cloud recognises these without
/// training phrases, so the local bot needs some.
pub const YES_PHRASES: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "sure",
    "correct",
    "that's right",
    "right",
    "okay",
    "ok",
    "sounds good",
    "please do",
    "go ahead",
    "confirm",
    "absolutely",
    "of course",
];
pub const NO_PHRASES: &[&str] = &[
    "no",
    "nope",
    "nah",
    "not really",
    "that's wrong",
    "incorrect",
    "cancel",
    "don't",
    "no thanks",
    "never mind",
    "stop",
];

/// JSON from an export file, with the file named in errors.
pub fn parse_json(
    files: &ExportFiles,
    format: ExportFormat,
    path: &str,
) -> Result<serde_json::Value, ImportError> {
    let bytes = files.get(path).ok_or_else(|| ImportError::Missing {
        format: format.label(),
        origin: files.origin().into(),
        detail: format!("{path} is missing (export the whole bot, not part of it)"),
    })?;
    // Some exporters write a UTF-8 byte order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    serde_json::from_slice(bytes).map_err(|e| ImportError::Parse {
        format: format.label(),
        origin: files.origin().into(),
        file: path.into(),
        detail: e.to_string(),
    })
}

/// YAML from an export file, with the file named in errors.
pub fn parse_yaml(
    files: &ExportFiles,
    format: ExportFormat,
    path: &str,
) -> Result<serde_norway::Value, ImportError> {
    let bytes = files.get(path).ok_or_else(|| ImportError::Missing {
        format: format.label(),
        origin: files.origin().into(),
        detail: format!("{path} is missing"),
    })?;
    serde_norway::from_slice(bytes).map_err(|e| ImportError::Parse {
        format: format.label(),
        origin: files.origin().into(),
        file: path.into(),
        detail: e.to_string(),
    })
}

/// Strings of a JSON value at `key` (absent, null or not strings: none).
pub fn json_str<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(serde_json::Value::as_str)
}

/// An array at `key`, empty when absent or null.
pub fn json_arr<'a>(v: &'a serde_json::Value, key: &str) -> &'a [serde_json::Value] {
    v.get(key)
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Say the same words once: a transition that leads into a state that
/// already says them on entry need not say them first.
pub fn dedupe_entry_say(bundle: &mut Bundle) {
    let entry: BTreeMap<String, crate::dialog::bundle::Prompts> = bundle
        .flow
        .states
        .iter()
        .map(|(n, s)| (n.clone(), s.say.clone()))
        .collect();
    let fix = |t: &mut crate::dialog::bundle::Transition| {
        if let Some(to) = &t.to {
            if !t.say.is_empty() && entry.get(to).is_some_and(|s| *s == t.say) {
                t.say = Default::default();
            }
        }
    };
    bundle.flow.global.iter_mut().for_each(fix);
    for s in bundle.flow.states.values_mut() {
        s.transitions.iter_mut().for_each(fix);
    }
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
