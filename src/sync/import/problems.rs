//! An export the engine cannot run, explained in the cloud console's own terms:
//! which intent, page or story to fix, and how.

use super::*;

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
pub(super) fn refers_to_builtin(message: &str) -> bool {
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
pub(super) fn cloud_place(format: ExportFormat, path: &str) -> String {
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
pub(super) fn cloud_state(format: ExportFormat, state: &str) -> String {
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
