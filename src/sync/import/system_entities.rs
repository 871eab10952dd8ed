//! System entities (`@sys.*`, `AMAZON.*`, Duckling) as the bundle's built-in
//! kinds, transfer targets, and the JSON/YAML readers every importer uses.

use super::*;

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
/// Phrases that answer no to such a confirmation: the counterpart of [`YES_PHRASES`].
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
