//! Texts of an export: SSML stripped, placeholders converted to the bundle's,
//! names made into identifiers.

use super::*;

pub(super) fn ssml_tag_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?s)<[^>]*>").unwrap())
}

pub(super) fn say_as_chars_re() -> &'static Regex {
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

pub(super) fn cloud_param_re() -> &'static Regex {
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
