//! Unit tests of `config`.

use super::*;

#[test]
fn empty_file_means_defaults_and_unknown_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.toml");
    std::fs::write(&path, "").unwrap();
    let c = Config::load(Some(&path)).unwrap();
    assert_eq!(c.models.pack, "default");
    std::fs::write(&path, "[engines.threads]\nstt = 1\nllmm = 3\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("llmm") && err.contains("u.toml"), "{err}");
}

#[test]
fn session_timeouts_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.toml");
    std::fs::write(&path, "[session]\nfiller_after_ms = 5000\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("filler_after_ms") && err.contains("u.toml"),
        "{err}"
    );
    std::fs::write(&path, "[session]\nturn_deadline_ms = 200\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("turn_deadline_ms"), "{err}");
    std::fs::write(
        &path,
        "[session]\nfiller_after_ms = 0\nturn_deadline_ms = 3000\n",
    )
    .unwrap();
    assert_eq!(
        Config::load(Some(&path)).unwrap().session.filler_after_ms,
        0
    );
    std::fs::write(&path, "[session]\ndtmf_interdigit_ms = 0\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(
        err.contains("dtmf_interdigit_ms") && err.contains("each bot's own"),
        "{err}"
    );
    std::fs::write(&path, "[session]\ndtmf_interdigit_ms = 2000\n").unwrap();
    assert_eq!(
        Config::load(Some(&path))
            .unwrap()
            .session
            .dtmf_interdigit_ms,
        Some(2000)
    );
    assert!(SessionConfig::default().validate().is_ok());
    for (toml, key) in [
        ("turn_max_silence_ms = 300", "turn_max_silence_ms"),
        ("smart_turn_threshold = 1.0", "smart_turn_threshold"),
        ("smart_turn_timeout_ms = 0", "smart_turn_timeout_ms"),
    ] {
        std::fs::write(&path, format!("[session]\n{toml}\n")).unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("default"), "{err}");
    }
}

#[test]
fn unset_options_are_listed() {
    let unset = Config::default().unset_keys();
    for key in [
        "bot.bundle",
        "session.dtmf_interdigit_ms",
        "session.takeover_prompt",
    ] {
        assert!(
            unset.contains(&key.to_string()),
            "{key} missing from {unset:?}"
        );
    }
    let mut config = Config::default();
    config.session.dtmf_interdigit_ms = Some(2000);
    assert!(!config
        .unset_keys()
        .contains(&"session.dtmf_interdigit_ms".to_string()));
}

#[test]
fn printed_defaults_parse_back() {
    let text = toml::to_string_pretty(&Config::default()).unwrap();
    let back: Config = toml::from_str(&text).unwrap();
    assert_eq!(
        back.engines.threads.stt,
        Config::default().engines.threads.stt
    );
}

/// docs/config.md must document every field: each table `[a.b]` has a
/// heading naming it, and each key a table row "| `key` |" in that
/// heading's section. A new field without a row fails here.
#[test]
fn every_config_key_is_documented() {
    const DOC: &str = include_str!("../../docs/config.md");

    // The section of DOC under the heading that names `[table]`, up to
    // the next heading (lines starting with '#' inside code fences are
    // not headings).
    fn section(table: &str) -> Option<String> {
        let name = format!("`[{table}]`");
        let mut fenced = false;
        let mut inside = false;
        let mut out = String::new();
        for line in DOC.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
            }
            let heading = !fenced && line.starts_with('#');
            if heading {
                if inside {
                    break;
                }
                inside = line.contains(&name);
                continue;
            }
            if inside {
                out.push_str(line);
                out.push('\n');
            }
        }
        inside.then_some(out)
    }

    // Every (table, key) of a serialized config. TOML drops unset
    // options, so the JSON form (where they are `null`) is walked too.
    fn walk_toml(table: &str, t: &toml::Table, out: &mut Vec<(String, String)>) {
        for (key, value) in t {
            if table.is_empty() {
                assert!(value.is_table(), "top-level key {key} is not a table");
                walk_toml(key, value.as_table().unwrap(), out);
                continue;
            }
            out.push((table.to_string(), key.clone()));
            if let Some(sub) = value.as_table() {
                walk_toml(&format!("{table}.{key}"), sub, out);
            }
        }
    }
    fn walk_json(table: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for (key, value) in v.as_object().expect("a table") {
            if table.is_empty() {
                walk_json(key, value, out);
                continue;
            }
            out.push((table.to_string(), key.clone()));
            if value.is_object() {
                walk_json(&format!("{table}.{key}"), value, out);
            }
        }
    }

    let defaults = Config::default();
    let text = toml::to_string_pretty(&defaults).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    let mut keys = Vec::new();
    walk_toml("", &table, &mut keys);
    walk_json("", &serde_json::to_value(&defaults).unwrap(), &mut keys);
    keys.sort();
    keys.dedup();
    assert!(keys.len() > 60, "too few keys found: {keys:?}");

    let mut missing = Vec::new();
    for (table, key) in &keys {
        match section(table) {
            None => missing.push(format!("[{table}] (no heading naming `[{table}]`)")),
            Some(text) if !text.contains(&format!("| `{key}` |")) => {
                missing.push(format!("{table}.{key}"))
            }
            Some(_) => {}
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "docs/config.md does not document: {}",
        missing.join(", ")
    );
}

#[test]
fn capacity_is_shared_and_the_older_name_still_counts() {
    let config: Config = toml::from_str("").unwrap();
    assert_eq!(config.call_capacity().unwrap(), DEFAULT_CAPACITY);
    let config: Config = toml::from_str("[calls]\ncapacity = 6\n").unwrap();
    assert_eq!(config.call_capacity().unwrap(), 6);
    let config: Config = toml::from_str("[sip]\ncapacity = 2\n").unwrap();
    assert_eq!(config.call_capacity().unwrap(), 2);
    let config: Config = toml::from_str("[calls]\ncapacity = 0\n").unwrap();
    let err = config.call_capacity().unwrap_err().to_string();
    assert!(
        err.contains("calls.capacity") && err.contains("at least 1"),
        "{err}"
    );
    assert!(!config.unset_keys().contains(&"sip.capacity".to_string()));
}
