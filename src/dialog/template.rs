//! Prompt templates: the `{slot}` placeholders a prompt may carry, and their
//! rendering for speech. Below both the bundle (which checks prompts) and the
//! slot filler (which fills them).

use super::text::spaced_digits;
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

fn placeholder_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\{([A-Za-z_][A-Za-z0-9_.\-]*)\}").unwrap())
}

/// Slot names a prompt refers to (`{order_number}`, `{order.status}`).
pub fn placeholders(text: &str) -> Vec<&str> {
    placeholder_re()
        .captures_iter(text)
        .map(|c| c.get(1).unwrap().as_str())
        .collect()
}

/// Whether a prompt refers to any slot.
pub fn has_placeholders(text: &str) -> bool {
    placeholder_re().is_match(text)
}

/// Fill a prompt's placeholders for speech: digit slots digit by digit
/// ("4 8 2 1 3"), others as they are, unknown ones as nothing.
pub fn render(
    text: &str,
    slots: &BTreeMap<String, String>,
    digit_slots: &BTreeSet<String>,
) -> String {
    let out = placeholder_re().replace_all(text, |c: &regex::Captures| {
        let name = &c[1];
        match slots.get(name) {
            Some(v) if digit_slots.contains(name) => spaced_digits(v),
            Some(v) => v.clone(),
            None => {
                tracing::warn!(
                    slot = name,
                    prompt = text,
                    "prompt names a slot that is not filled"
                );
                String::new()
            }
        }
    });
    // An empty placeholder leaves double spaces behind.
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_render_digit_slots_digit_by_digit() {
        let slots: BTreeMap<String, String> = [
            ("order_number".to_string(), "48213".to_string()),
            ("order.status".into(), "shipped".into()),
        ]
        .into();
        let digit_slots: BTreeSet<String> = ["order_number".to_string()].into();
        assert_eq!(
            render(
                "Order {order_number} has {order.status}.",
                &slots,
                &digit_slots
            ),
            "Order 4 8 2 1 3 has shipped."
        );
        assert_eq!(
            render("Hi {missing} there", &slots, &digit_slots),
            "Hi there"
        );
        assert_eq!(placeholders("{a} and {b.c}"), ["a", "b.c"]);
        assert!(!has_placeholders("Plain text."));
    }
}
