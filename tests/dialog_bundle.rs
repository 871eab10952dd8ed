//! The bundle format: the demo and fixtures load, broken bundles fail with
//! errors that name the file, the field and the problem, and validation
//! finds dangling transitions, missing prompts and unreachable states.

use std::path::{Path, PathBuf};
use understudy::dialog::bundle::Localized;
use understudy::dialog::{Bundle, BundleError, Severity};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bundles")
        .join(name)
}

fn load_err(name: &str) -> String {
    let err = Bundle::load(&fixture(name)).expect_err("the fixture is broken on purpose");
    let text = err.to_string();
    assert!(text.contains(name), "the error names the file: {text}");
    text
}

#[test]
fn demo_bundle_loads_without_errors_or_warnings() {
    let bundle = Bundle::demo();
    assert_eq!(bundle.format, "understudy-bundle/1");
    assert_eq!(bundle.name(), "Understudy Outfitters");
    let issues = bundle.validate();
    assert!(
        issues.is_empty(),
        "the demo should be spotless: {issues:#?}"
    );
    for intent in ["order_status", "returns", "store_hours", "agent", "goodbye"] {
        let phrases = match &bundle.intents[intent].phrases {
            Localized::One(p) => p.len(),
            Localized::ByLang(_) => panic!("the demo is English only"),
        };
        assert!(
            (10..=20).contains(&phrases),
            "{intent} has {phrases} training phrases"
        );
    }
    assert_eq!(bundle.handoff_target(), Some("agents"));
    assert_eq!(bundle.safety_net_target(), "sip:agents@pbx.example.com");
    assert!(bundle.knowledge.len() >= 8);
    assert!(bundle.tests.len() >= 8);
}

#[test]
fn static_prompts_are_every_fixed_text_and_no_template() {
    let prompts = Bundle::demo().static_prompts("en");
    for expected in [
        "Thanks for calling Understudy Outfitters.",
        "Sure. What's your order number? You can say it or key it in.",
        "Sorry, I didn't hear anything.",
        "Let me connect you with someone who can help.",
        "I'm sorry, I'm having trouble right now. Let me connect you with a colleague.",
        "Sure, I'll connect you with an agent now.",
        "Is there anything else I can help you with?",
    ] {
        assert!(
            prompts.iter().any(|p| p == expected),
            "missing static prompt {expected:?} in {prompts:#?}"
        );
    }
    assert!(
        prompts.iter().all(|p| !p.contains('{')),
        "templates are not static: {prompts:#?}"
    );
    let unique: std::collections::BTreeSet<_> = prompts.iter().collect();
    assert_eq!(unique.len(), prompts.len(), "deduplicated");
}

#[test]
fn minimal_and_multilanguage_fixtures_load() {
    let minimal = Bundle::load(&fixture("minimal.yaml")).unwrap();
    assert_eq!(
        minimal.transfer_targets["staff"].destination(),
        "tel:+15550100"
    );
    assert_eq!(
        minimal.data["repairs"].rows[0]["ticket"], "1234",
        "numbers in data read as strings"
    );
    let multi = Bundle::load(&fixture("multilang.yaml")).unwrap();
    let german = multi.static_prompts("de");
    assert!(
        german.contains(&"Hallo! Fragen Sie nach unseren Öffnungszeiten.".to_string()),
        "{german:?}"
    );
    assert!(
        !german.contains(&"Hello! Ask about our hours.".to_string()),
        "{german:?}"
    );
    assert!(multi
        .static_prompts("en")
        .contains(&"Hello! Ask about our hours.".to_string()));
    // Its settings keep the built-in English prompts: flagged for the designer.
    let warnings: Vec<String> = multi.validate().iter().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("settings.no_match.prompts")
                && w.contains("built-in English text")
                && w.contains("de")),
        "{warnings:#?}"
    );
}

#[test]
fn the_documented_example_is_a_valid_bundle() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bundle-format.md"),
    )
    .unwrap();
    let example = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/bundle-format.md has a yaml example");
    let bundle = Bundle::parse(example, "docs/bundle-format.md").unwrap();
    let fixture = Bundle::load(&fixture("minimal.yaml")).unwrap();
    assert_eq!(
        bundle.to_yaml(),
        fixture.to_yaml(),
        "the doc example and tests/fixtures/bundles/minimal.yaml are the same bundle"
    );
}

#[test]
fn bundles_round_trip_through_yaml_and_json() {
    let demo = Bundle::demo();
    let yaml = demo.to_yaml();
    let again = Bundle::parse(&yaml, "round trip").unwrap();
    assert_eq!(again.to_yaml(), yaml);
    let json = serde_json::to_string_pretty(&demo).unwrap();
    let from_json = Bundle::parse(&json, "demo.json").unwrap();
    assert_eq!(from_json.to_yaml(), yaml, "JSON bundles read the same");
}

#[test]
fn bad_yaml_names_the_file_and_the_line() {
    let err = load_err("bad_yaml.yaml");
    assert!(
        err.contains("does not parse") && err.contains("line"),
        "{err}"
    );
}

#[test]
fn dangling_transition_is_named_with_its_path_and_the_fix() {
    let err = load_err("dangling_transition.yaml");
    assert!(err.contains("flow.states.menu.transitions[0].to"), "{err}");
    assert!(
        err.contains("`opening_hours` does not exist") && err.contains("known: hours, menu"),
        "{err}"
    );
}

#[test]
fn missing_prompts_are_errors() {
    // A language the bundle declares but a prompt lacks.
    let err = load_err("missing_prompt.yaml");
    assert!(
        err.contains("flow.states.status.collect[0].prompt") && err.contains("language `de`"),
        "{err}"
    );
    // A slot without any prompt at all.
    let err = load_err("no_prompt_field.yaml");
    assert!(
        err.contains("flow.states.status.collect[0]") && err.contains("missing field `prompt`"),
        "{err}"
    );
}

#[test]
fn a_typo_names_the_field_and_the_allowed_ones() {
    let err = load_err("typo_field.yaml");
    assert!(
        err.contains("flow.states.menu")
            && err.contains("unknown field `sya`")
            && err.contains("`say`"),
        "{err}"
    );
}

#[test]
fn another_format_version_is_refused_as_such() {
    let err = Bundle::load(&fixture("future_format.yaml")).unwrap_err();
    assert!(matches!(err, BundleError::Format { .. }), "{err:?}");
    assert!(
        err.to_string().contains("understudy-bundle/2")
            && err.to_string().contains("understudy-bundle/1")
    );
    let err = Bundle::parse("bot: {name: x}\n", "inline")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing `format: understudy-bundle/1`"),
        "{err}"
    );
}

#[test]
fn a_missing_file_says_where_it_looked() {
    let err = Bundle::load(Path::new("/nonexistent/bot.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/bot.yaml") && err.contains("--bundle"),
        "{err}"
    );
}

#[test]
fn validation_reports_unreachable_states_unknown_targets_and_loops() {
    let mut b = Bundle::load(&fixture("minimal.yaml")).unwrap();
    let island = b.flow.states["menu"].clone();
    b.flow.states.insert("island".into(), island);
    b.flow.states.get_mut("book").unwrap().transitions[0].end = false;
    b.flow.states.get_mut("book").unwrap().transitions[0].transfer = Some("nobody".into());
    let mut a = b.flow.states["menu"].clone();
    a.transitions = vec![serde_norway::from_str("{to: loop_b}").unwrap()];
    let mut bb = a.clone();
    bb.transitions = vec![serde_norway::from_str("{to: loop_a}").unwrap()];
    b.flow.states.insert("loop_a".into(), a);
    b.flow.states.insert("loop_b".into(), bb);
    let issues = b.validate();
    let has = |sev: Severity, path: &str, text: &str| {
        issues
            .iter()
            .any(|i| i.severity == sev && i.path == path && i.message.contains(text))
    };
    assert!(
        has(Severity::Warning, "flow.states.island", "unreachable"),
        "{issues:#?}"
    );
    assert!(
        has(
            Severity::Error,
            "flow.states.book.transitions[0].transfer",
            "`nobody` does not exist"
        ),
        "{issues:#?}"
    );
    assert!(
        issues
            .iter()
            .any(|i| i.severity == Severity::Error && i.message.contains("loop_a -> loop_b")),
        "{issues:#?}"
    );
    // Errors come first.
    assert_eq!(issues[0].severity, Severity::Error);
}

#[test]
fn validation_checks_triggers_entities_and_placeholders() {
    let mut b = Bundle::load(&fixture("minimal.yaml")).unwrap();
    let menu = b.flow.states.get_mut("menu").unwrap();
    menu.transitions
        .push(serde_norway::from_str("{intent: nope, dtmf: 'x1', to: menu}").unwrap());
    menu.transitions
        .push(serde_norway::from_str("{intent: book, to: menu, end: true}").unwrap());
    menu.say = serde_norway::from_str("'Hello {caller_name}'").unwrap();
    b.flow.states.get_mut("status").unwrap().collect[0].entity = "tiket".into();
    b.flow
        .global
        .push(serde_norway::from_str("{to: menu}").unwrap());
    let issues = b.validate();
    let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(
        has("error: flow.states.menu.transitions[2].intent: intent `nope` does not exist"),
        "{text:#?}"
    );
    assert!(
        has("flow.states.menu.transitions[2].dtmf: `x1` is not a DTMF key string"),
        "{text:#?}"
    );
    assert!(
        has("flow.states.menu.transitions[3]: needs exactly one of"),
        "{text:#?}"
    );
    assert!(has("entity `tiket` does not exist"), "{text:#?}");
    assert!(has("warning: flow.states.menu.say[0]: `{caller_name}` names no collected or looked-up slot"), "{text:#?}");
    assert!(
        has("flow.global[1]: a global transition needs an `intent` or `dtmf` trigger"),
        "{text:#?}"
    );
}

#[test]
fn conditions_accept_every_documented_shape() {
    use std::collections::BTreeMap;
    use understudy::dialog::bundle::Condition;
    let slots: BTreeMap<String, String> = [("a".to_string(), "Ready".to_string())].into();
    let c: Condition = serde_norway::from_str(
        "{all: [{filled: a}, {not: {empty: a}}, {equals: {slot: a, value: ready}}]}",
    )
    .unwrap();
    assert!(c.holds(&slots));
    let c: Condition =
        serde_norway::from_str("{any: [{filled: b}, {equals: {slot: a, value: 3}}]}").unwrap();
    assert!(!c.holds(&slots));
    let err = serde_norway::from_str::<Condition>("{filled: a, empty: b}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("exactly one of"), "{err}");
}
