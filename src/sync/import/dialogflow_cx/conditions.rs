//! CX's small expression language as far as the bundle carries it
//! (`=`, `!=`, `null`, AND/OR), special pages, durations and languages.

use super::*;

/// CX's built-in page targets, as exports name them: `END_FLOW` (older
/// exports) or `End Flow` (the console's display names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SpecialPage {
    EndSession,
    EndFlow,
    /// End Flow With Failure / Cancellation: the outcome named.
    EndFlowWith(&'static str),
    EndFlowWithHumanEscalation,
    Current,
    Previous,
    Start,
}

impl SpecialPage {
    pub(super) fn of(target: &str) -> Option<SpecialPage> {
        let key: String = target
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_uppercase)
            .collect();
        Some(match key.as_str() {
            "ENDSESSION" => SpecialPage::EndSession,
            "ENDFLOW" => SpecialPage::EndFlow,
            "ENDFLOWWITHFAILURE" => SpecialPage::EndFlowWith("failure"),
            "ENDFLOWWITHCANCELLATION" => SpecialPage::EndFlowWith("cancellation"),
            "ENDFLOWWITHHUMANESCALATION" => SpecialPage::EndFlowWithHumanEscalation,
            "CURRENTPAGE" => SpecialPage::Current,
            "PREVIOUSPAGE" => SpecialPage::Previous,
            "STARTPAGE" => SpecialPage::Start,
            _ => return None,
        })
    }
}

/// `{seconds: 5, nanos: 500000000}` or `"5s"` in milliseconds.
pub(super) fn duration_ms(v: &Value) -> Option<u32> {
    if let Some(s) = v.as_str() {
        return s
            .trim_end_matches('s')
            .parse::<f64>()
            .ok()
            .map(|s| (s * 1000.0) as u32);
    }
    let secs = v.get("seconds").and_then(|s| {
        s.as_u64()
            .or_else(|| s.as_str().and_then(|s| s.parse().ok()))
    });
    let nanos = v.get("nanos").and_then(Value::as_u64);
    if secs.is_none() && nanos.is_none() {
        return None;
    }
    Some((secs.unwrap_or(0) * 1000 + nanos.unwrap_or(0) / 1_000_000) as u32)
}

/// The file stem: `trainingPhrases/de.json` -> `de`, `pages/Collect Info.json` -> `Collect Info`.
pub(super) fn lang_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".json").unwrap_or(file).to_string()
}

/// CX conditions this engine can check: `$page.params.status = "FINAL"`
/// and `true` (always), `$session.params.x = "v"` / `!= "v"` / `= null` /
/// `!= null`, joined by AND or OR (not both, no parentheses).
/// `Ok(None)`: unconditional.
pub(super) fn parse_condition(c: &str) -> Result<Option<Condition>, String> {
    if c.contains('(') {
        return Err("parentheses and functions are not supported".into());
    }
    let (parts, any) = if c.contains(" OR ") && c.contains(" AND ") {
        return Err("AND and OR together are not supported".into());
    } else if c.contains(" OR ") {
        (c.split(" OR ").collect::<Vec<_>>(), true)
    } else {
        (c.split(" AND ").collect::<Vec<_>>(), false)
    };
    let mut conds = vec![];
    for part in parts {
        if let Some(cond) = parse_comparison(part.trim())? {
            conds.push(cond);
        }
    }
    Ok(match conds.len() {
        0 => None,
        1 => conds.pop(),
        _ if any => Some(Condition::Any(conds)),
        _ => Some(Condition::All(conds)),
    })
}

pub(super) fn parse_comparison(c: &str) -> Result<Option<Condition>, String> {
    if c.eq_ignore_ascii_case("true") {
        return Ok(None);
    }
    let (lhs, rhs, negated) = if let Some((l, r)) = c.split_once("!=") {
        (l.trim(), r.trim(), true)
    } else if let Some((l, r)) = c.split_once('=') {
        (l.trim(), r.trim(), false)
    } else {
        return Err(format!("`{c}` is not a comparison"));
    };
    let rhs = rhs.trim_matches('"');
    if lhs == "$page.params.status" && rhs == "FINAL" && !negated {
        // Form complete: automatic transitions here run only once every slot is filled.
        return Ok(None);
    }
    let slot = lhs
        .strip_prefix("$session.params.")
        .or_else(|| lhs.strip_prefix("$page.params."))
        .ok_or_else(|| format!("`{lhs}` is not a session or page parameter"))?;
    let slot = slot_ident(slot);
    let cond = if rhs == "null" {
        if negated {
            Condition::Filled(slot)
        } else {
            Condition::Empty(slot)
        }
    } else {
        let eq = Condition::Equals {
            slot,
            value: rhs.to_string(),
        };
        if negated {
            Condition::Not(Box::new(eq))
        } else {
            eq
        }
    };
    Ok(Some(cond))
}
