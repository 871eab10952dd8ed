//! Reading Rasa's YAML values: examples lists, annotated examples, scalars.

use super::*;

pub(super) fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Examples of an NLU item: a `- ` list in a block string, or a YAML list.
pub(super) fn examples_of(item: &Value) -> Vec<String> {
    match item.get("examples") {
        Some(Value::String(block)) => block
            .lines()
            .filter_map(|l| {
                l.trim_start()
                    .strip_prefix("- ")
                    .or_else(|| l.trim_start().strip_prefix('-'))
            })
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .or_else(|| str_of(i, "text").map(str::to_string))
            })
            .collect(),
        _ => vec![],
    }
}

/// `the priority is [high](priority)` -> ("the priority is high", [(priority, high, high)]);
/// also `[escalated]{"entity": "priority", "value": "high"}` and `[x](entity:value)`.
pub(super) fn strip_annotations(example: &str) -> (String, Vec<(String, String, String)>) {
    let re = regex::Regex::new(r#"\[([^\]]+)\](?:\(([^)]+)\)|(\{[^}]*\}))"#).unwrap();
    let mut found = vec![];
    let text = re.replace_all(example, |c: &regex::Captures| {
        let said = c[1].to_string();
        if let Some(paren) = c.get(2) {
            let (entity, value) = paren
                .as_str()
                .split_once(':')
                .unwrap_or((paren.as_str(), &said));
            found.push((
                entity.trim().to_string(),
                said.clone(),
                value.trim().to_string(),
            ));
        } else if let Some(json) = c.get(3) {
            let v: serde_json::Value = serde_json::from_str(json.as_str()).unwrap_or_default();
            if let Some(entity) = v["entity"].as_str() {
                let value = v["value"].as_str().unwrap_or(&said).to_string();
                found.push((entity.to_string(), said.clone(), value));
            }
        }
        said
    });
    (text.split_whitespace().collect::<Vec<_>>().join(" "), found)
}
