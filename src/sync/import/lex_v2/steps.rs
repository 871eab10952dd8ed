//! Lex V2 dialog steps and slot references inside messages.

use super::*;

/// Whether a Lex next step ends the conversation (`None`: not given).
pub(super) fn next_step_ends(step: &Value) -> Option<bool> {
    match step["dialogAction"]["type"].as_str()? {
        "EndConversation" => Some(true),
        _ => Some(false),
    }
}

/// `I want {FlowerType}` -> `I want roses`: a slot reference in a training
/// phrase becomes a sample value of its type (or goes, when it has none).
pub(super) fn fill_slot_refs(
    utterance: &str,
    slots: &BTreeMap<String, (String, Value)>,
    samples: &BTreeMap<String, String>,
) -> String {
    let re = regex::Regex::new(r"\{([^}]+)\}").unwrap();
    let filled = re.replace_all(utterance, |c: &regex::Captures| {
        let type_name = slots
            .get(&c[1])
            .and_then(|(_, s)| json_str(s, "slotTypeName"))
            .map(ident);
        type_name
            .and_then(|t| samples.get(&t).cloned())
            .unwrap_or_default()
    });
    filled.split_whitespace().collect::<Vec<_>>().join(" ")
}
