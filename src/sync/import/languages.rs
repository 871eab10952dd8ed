//! Languages of an export: codes normalised, per-language maps of texts.

use super::*;

/// Canonical language codes for an export's locales: the primary subtag
/// alone (`en_US` -> `en`) unless two locales share it (`en-US`, `en-GB`).
/// The built-in prompts and the speech engines know languages by `en`, `de`.
#[derive(Debug, Clone)]
pub struct Languages {
    pub(super) map: BTreeMap<String, String>,
    /// The default language's canonical code.
    pub default: String,
}

impl Languages {
    /// Canonical codes for the locales in `all` and the export's default locale `default`.
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

    /// Every canonical code, the default first.
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
    /// The value for `lang`, created empty if it has none yet.
    pub fn entry(&mut self, lang: &str) -> &mut T {
        self.0.entry(lang.to_string()).or_default()
    }

    /// Whether no language has a value yet.
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
