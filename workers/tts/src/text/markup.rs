//! SSML-ish markup in prompt texts: `<break>`, `<say-as interpret-as="characters">`,
//! entities; everything else is dropped.

use super::*;

pub(super) static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<(/?)([A-Za-z][\w:-]*)([^>]*?)(/?)>").unwrap());
pub(super) static ATTR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')"#).unwrap());

pub(super) fn attr(attrs: &str, name: &str) -> Option<String> {
    ATTR.captures_iter(attrs)
        .find(|c| c[1].eq_ignore_ascii_case(name))
        .map(|c| {
            c.get(2)
                .or(c.get(3))
                .map_or(String::new(), |m| m.as_str().to_string())
        })
}

/// Replace the supported SSML tags by markers, drop the others, decode entities.
pub(super) fn parse_markup(input: &str) -> String {
    if !input.contains('<') {
        return decode_entities(input);
    }
    let mut out = String::with_capacity(input.len());
    let mut last = 0;
    // A `<sub alias>` hides its content until `</sub>`.
    let mut hide_until_close: Option<String> = None;
    // Open `<say-as>` tags: true for those that spell their content.
    let mut say_as: Vec<bool> = Vec::new();
    for cap in TAG.captures_iter(input) {
        let whole = cap.get(0).unwrap();
        if hide_until_close.is_none() {
            out.push_str(&decode_entities(&input[last..whole.start()]));
        }
        last = whole.end();
        let closing = !cap[1].is_empty();
        let name = cap[2].to_ascii_lowercase();
        let attrs = &cap[3];
        if let Some(hidden) = &hide_until_close {
            if closing && *hidden == name {
                hide_until_close = None;
            }
            continue;
        }
        match (name.as_str(), closing) {
            ("say-as", false) => {
                let how = attr(attrs, "interpret-as")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let spells = matches!(
                    how.as_str(),
                    "digits" | "characters" | "spell-out" | "telephone" | "verbatim"
                );
                if spells {
                    out.push(SPELL_OPEN);
                }
                say_as.push(spells);
            }
            ("say-as", true) => {
                let was_spelling = say_as.pop() == Some(true);
                if was_spelling {
                    out.push(SPELL_CLOSE);
                }
            }
            ("sub", false) => {
                if let Some(alias) = attr(attrs, "alias") {
                    out.push_str(&decode_entities(&alias));
                    hide_until_close = Some(name);
                }
            }
            ("break", _) => {
                let ms = attr(attrs, "time")
                    .and_then(|t| parse_duration_ms(&t))
                    .unwrap_or_else(|| match attr(attrs, "strength").as_deref() {
                        Some("none") => 0,
                        Some("x-weak") | Some("weak") => 150,
                        Some("x-strong") => 1000,
                        Some("strong") => 700,
                        _ => 400,
                    });
                out.push_str(&format!("{BREAK_OPEN}{ms}{BREAK_CLOSE}"));
            }
            // Paragraphs and sentences end a sentence.
            ("p" | "s", true) => out.push('\n'),
            _ => {}
        }
    }
    if hide_until_close.is_none() {
        out.push_str(&decode_entities(&input[last..]));
    }
    out
}

pub(super) fn parse_duration_ms(t: &str) -> Option<u32> {
    let t = t.trim();
    let (number, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = t.strip_suffix('s') {
        (s, 1000.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = number.trim().parse().ok()?;
    // SSML caps breaks at 10 s; so do we.
    Some((v * scale).clamp(0.0, 10_000.0) as u32)
}

pub(super) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

pub(super) enum Part<'a> {
    Text(&'a str),
    Pause(u32),
}

pub(super) fn split_breaks(s: &str) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find(BREAK_OPEN) {
        parts.push(Part::Text(&rest[..open]));
        let after = &rest[open + BREAK_OPEN.len_utf8()..];
        let close = after.find(BREAK_CLOSE).unwrap_or(after.len());
        parts.push(Part::Pause(after[..close].parse().unwrap_or(0)));
        rest = after.get(close + BREAK_CLOSE.len_utf8()..).unwrap_or("");
    }
    parts.push(Part::Text(rest));
    parts
}
