//! The call plane's layout, checked: every `crate::`, `super::` and
//! `self::` path in `src/` is read as an arrow from the module that writes
//! it to the module it names, and
//!
//! - no two modules import each other, directly or round a circle (a
//!   module may use its ancestors' items: a child implements part of its
//!   parent, which is structure, not a dependency);
//! - the top-level modules keep to their layers: from the edges (the command
//!   line, the transports) down to the core (session, dialog, engines,
//!   audio), never back up.
//!
//! docs/architecture.md draws the same layers. A failure names the arrows
//! to remove.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, from the edges down to the core: a module may use
/// those on later lines only. Modules on one line do not use each other.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["bench"],
    &["sync", "http", "update"],
    &["transport"],
    &["continuity"],
    &["session"],
    &["dialog"],
    &["engines"],
    &["config", "metrics", "stats", "net", "audio", "systemd"],
];

type Module = Vec<String>;

/// Every source file of the library, with its module path.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            match parts.last().map(String::as_str) {
                Some("main") if parts.len() == 1 => continue,
                Some("lib") if parts.len() == 1 => parts.clear(),
                Some("mod") => {
                    parts.pop();
                }
                _ => {}
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The text with comments and string literals blanked out (paths in docs
/// and messages are not imports).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '"') or a lifetime ('a).
            let len = if b.get(i + 1) == Some(&b'\\') {
                (i + 3..b.len().min(i + 14))
                    .find(|&j| b[j] == b'\'')
                    .map(|j| j + 1 - i)
            } else {
                let ch = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            match len {
                Some(len) => {
                    out.push_str("' '");
                    i += len;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The paths a `use` tree or an inline path names, as segment lists from
/// its root (`crate`, `super` or `self`): `crate::{a, b::{c, d}}` gives
/// `crate::a`, `crate::b::c`, `crate::b::d`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0
            || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == ':');
        let rest: String = chars[i..chars.len().min(i + 7)].iter().collect();
        let root = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|r| rest.starts_with(r));
        match root {
            Some(r) if boundary => {
                let mut prefix = vec![r.trim_end_matches("::").to_string()];
                i += r.len();
                // `super::super::` chains.
                while chars[i..].iter().collect::<String>().starts_with("super::") {
                    prefix.push("super".into());
                    i += 7;
                }
                i = tree(&chars, i, prefix, &mut out);
            }
            _ => i += 1,
        }
    }
    out
}

/// Read one use tree at `i` under `prefix`; returns where it ended.
fn tree(chars: &[char], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() && chars[i] == '{' {
            i += 1;
            loop {
                i = tree(chars, i, path.clone(), out);
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    return i + 1;
                }
            }
        }
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if i == start {
            out.push(path);
            return i;
        }
        path.push(chars[start..i].iter().collect());
        if chars[i..].iter().take(2).collect::<String>() == "::" {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// The module a path names: the longest known module its segments start with.
fn resolve(from: &Module, path: &[String], known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut base: Module = match path.first()?.as_str() {
        "crate" => vec![],
        "self" | "super" => from.clone(),
        _ => return None,
    };
    let mut rest = &path[1..];
    if path[0] == "super" {
        base.pop()?;
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    let mut found = None;
    let mut candidate = base.clone();
    if known.contains_key(&candidate) {
        found = Some(candidate.clone());
    }
    for seg in rest {
        candidate.push(seg.clone());
        if known.contains_key(&candidate) {
            found = Some(candidate.clone());
        } else {
            break;
        }
    }
    found
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Arrows between modules, each with the file that draws it.
fn arrows() -> BTreeMap<(Module, Module), PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    assert!(
        known.len() > 50,
        "the library's sources were not found in {}",
        src.display()
    );
    let mut edges = BTreeMap::new();
    for (module, file) in &known {
        let text = std::fs::read_to_string(file).unwrap();
        for path in paths(&code_only(&text)) {
            let Some(target) = resolve(module, &path, &known) else {
                continue;
            };
            // Using an ancestor's items (or one's own) is structure.
            if module.starts_with(&target) {
                continue;
            }
            edges
                .entry((module.clone(), target))
                .or_insert(file.clone());
        }
    }
    edges
}

#[test]
fn no_module_imports_its_importers() {
    let edges = arrows();
    let mut graph: BTreeMap<&Module, BTreeSet<&Module>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().insert(to);
    }
    // A circle exists iff some arrow's head reaches its tail again.
    let mut circles = Vec::new();
    for (from, to) in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack = vec![to];
        let mut back = false;
        while let Some(m) = stack.pop() {
            if m == from {
                back = true;
                break;
            }
            if seen.insert(m) {
                stack.extend(graph.get(m).into_iter().flatten().copied());
            }
        }
        if back {
            circles.push(format!("{} -> {}", name(from), name(to)));
        }
    }
    assert!(
        circles.is_empty(),
        "these imports are part of a circle (move the shared item down, or the using code up):\n  {}",
        circles.join("\n  ")
    );
}

#[test]
fn top_level_modules_depend_downwards_only() {
    let rank = |m: &Module| -> Option<usize> {
        let top = m.first()?;
        LAYERS
            .iter()
            .position(|layer| layer.contains(&top.as_str()))
    };
    let mut wrong = Vec::new();
    let mut unlisted = BTreeSet::new();
    for ((from, to), file) in arrows() {
        let (Some(a), Some(b)) = (from.first(), to.first()) else {
            continue;
        };
        if a == b {
            continue;
        }
        match (rank(&from), rank(&to)) {
            (Some(ra), Some(rb)) if ra < rb => {}
            (Some(_), Some(_)) => wrong.push(format!(
                "{} -> {} ({})",
                name(&from),
                name(&to),
                file.display()
            )),
            (None, _) => {
                unlisted.insert(a.clone());
            }
            (_, None) => {
                unlisted.insert(b.clone());
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "top-level modules missing from LAYERS (tests/architecture.rs and docs/architecture.md): {unlisted:?}"
    );
    assert!(
        wrong.is_empty(),
        "these imports point up the layers (see LAYERS):\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_reader_sees_imports_and_not_text() {
    let code = code_only(
        "use crate::{audio::Frame, dialog::{Bot, bundle::Bundle}};\n\
         // crate::nothing::here\n\
         let s = \"crate::not::this\"; let c = '\"'; let t = crate::stats::Stat::new();\n\
         use super::super::x;",
    );
    let found: Vec<String> = paths(&code).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "crate::audio::Frame",
            "crate::dialog::Bot",
            "crate::dialog::bundle::Bundle",
            "crate::stats::Stat::new",
            "super::super::x"
        ]
    );
}
