//! Importers: our own fixtures in all four formats (zipped the messy way
//! real exports come) map prompts, phrases, entities, flows, transfers and
//! settings as docs/sync.md says, with warnings for what they cannot carry;
//! every real export in ../shared/testdata imports and answers one of its
//! own training phrases with its own response in `understudy chat`.

mod sync_support;

use sync_support::*;
use understudy::dialog::bundle::{Entity, Localized};
use understudy::dialog::Bundle;
use understudy::sync::import::{self, ExportFormat, Imported};

fn import_messy(rel: &str) -> Imported {
    let bytes = messy_zip(&fixture(rel));
    let imported = import::import_bytes(&bytes, &format!("{rel}.zip"))
        .unwrap_or_else(|e| panic!("{rel}: {e}"));
    // The same export as a folder imports to the same bundle.
    let from_dir = import::import_path(&fixture(rel)).unwrap();
    let strip = |b: &Bundle| {
        let mut b = b.clone();
        b.bot.source.clear();
        b.to_yaml()
    };
    assert_eq!(
        strip(&imported.bundle),
        strip(&from_dir.bundle),
        "{rel}: zip and folder differ"
    );
    assert!(
        imported.warnings.iter().any(|w| w.at.contains("__MACOSX")),
        "junk entries are reported: {:#?}",
        imported.warnings
    );
    imported
}

fn warned(i: &Imported, fragment: &str) -> bool {
    i.warnings.iter().any(|w| w.to_string().contains(fragment))
}

fn say(b: &Bundle, state: &str, lang: &str) -> Vec<String> {
    let s = b.flow.states.get(state).unwrap_or_else(|| {
        panic!(
            "no state {state:?}; states: {:?}",
            b.flow.states.keys().collect::<Vec<_>>()
        )
    });
    s.say
        .0
        .iter()
        .map(|t| t.get(lang, b.language()).unwrap().clone())
        .collect()
}

#[test]
fn dialogflow_cx_fixture_maps_pages_forms_languages_and_transfers() {
    let i = import_messy("dialogflow_cx/pizza-line");
    let b = &i.bundle;
    assert_eq!(i.format, ExportFormat::DialogflowCx);
    assert_eq!(
        (b.bot.name.as_str(), b.language(), b.bot.languages.clone()),
        ("Pizza Line", "en", vec!["de".to_string()])
    );
    // The welcome route is the greeting, in both languages.
    assert_eq!(b.flow.start, "Default Start Flow/Start");
    assert_eq!(
        say(b, "Default Start Flow/Start", "de"),
        vec!["Pizza Line, hallo! Möchten Sie eine Pizza bestellen?"]
    );
    // Training phrases per language; annotated parts joined.
    let phrases = &b.intents["order.pizza"].phrases;
    assert!(phrases
        .get("en", "en")
        .unwrap()
        .contains(&"can I get a large pizza".to_string()));
    assert!(phrases
        .get("de", "en")
        .unwrap()
        .contains(&"eine pizza bitte".to_string()));
    // The page: entry prompt, barge-in off, form with reprompts, conditions.
    let order = &b.flow.states["Default Start Flow/Order"];
    assert_eq!(
        order.barge_in,
        Some(false),
        "allowPlaybackInterruption: false"
    );
    assert_eq!(
        order.collect.len(),
        2,
        "the optional parameter is not asked"
    );
    assert_eq!(order.collect[0].slot, "size");
    assert_eq!(
        order.collect[0].reprompts[0].get("de", "en").unwrap(),
        "Bitte sagen Sie klein, mittel oder groß."
    );
    assert!(
        matches!(&b.entities["size"], Entity::List { values: Localized::ByLang(m) } if m["de"][2].synonyms.contains(&"groß".to_string()))
    );
    assert!(
        matches!(b.entities[&order.collect[1].entity], Entity::Digits { .. }),
        "@sys.phone-number is digits"
    );
    assert!(
        order.transitions[0].condition.is_some() && order.transitions[0].end,
        "the size = large route"
    );
    assert_eq!(
        say_transition(b, "Default Start Flow/Order", 1),
        "One {size} pizza, coming up. Goodbye!"
    );
    // Flow-level intent routes apply on the page too; the transfer has its number.
    let agent = order
        .transitions
        .iter()
        .find(|t| t.intent.as_deref() == Some("talk.to.agent"))
        .expect("flow route on the page");
    let target = agent.transfer.as_deref().unwrap();
    assert_eq!(b.transfer_targets[target].destination(), "tel:+4930123456");
    // Agent settings.
    assert_eq!(b.settings.no_input.timeout_ms, 7000);
    assert_eq!(b.settings.dtmf.max_digits, 6);
    assert_eq!(
        b.settings.no_match.prompts[0].get("de", "en").unwrap(),
        "Wie bitte?"
    );
    // Test cases become tests.
    assert_eq!(b.tests.len(), 1);
    for w in [
        "webhook",
        "optional parameter `note`",
        "IS_DATE",
        "fuzzy",
        "2 text variants",
    ] {
        assert!(warned(&i, w), "no warning about {w}: {:#?}", i.warnings);
    }
    assert_eq!(i.stats.intents, 3);
}

fn say_transition(b: &Bundle, state: &str, i: usize) -> String {
    b.flow.states[state].transitions[i].say.0[0]
        .get("en", "en")
        .unwrap()
        .clone()
}

#[test]
fn dialogflow_es_fixture_maps_contexts_parameters_and_telephony() {
    let i = import_messy("dialogflow_es/dental-office");
    let b = &i.bundle;
    assert_eq!(i.format, ExportFormat::DialogflowEs);
    assert_eq!(
        (b.language(), b.bot.languages.clone()),
        ("en", vec!["fr".to_string()])
    );
    // The WELCOME intent is the start; its follow-up is a transition there only.
    assert_eq!(b.flow.start, "Default_Welcome_Intent");
    assert_eq!(
        say(b, "Default_Welcome_Intent", "fr"),
        vec!["Dentiste Sourire, bonjour! Voulez-vous réserver un nettoyage?"]
    );
    let welcome = &b.flow.states["Default_Welcome_Intent"];
    assert_eq!(
        welcome.transitions[0].intent.as_deref(),
        Some("Default_Welcome_Intent_-_yes")
    );
    assert!(
        !b.flow
            .global
            .iter()
            .any(|t| t.intent.as_deref() == Some("Default_Welcome_Intent_-_yes")),
        "follow-ups are not global"
    );
    // Required parameter -> collect; the response after it, placeholders converted.
    let yes = &b.flow.states["Default_Welcome_Intent_-_yes"];
    assert_eq!(
        yes.collect[0].prompt.get("fr", "en").unwrap(),
        "Quel jour vous convient?"
    );
    assert_eq!(
        yes.transitions[0].say.0[0].get("en", "en").unwrap(),
        "Booked for {day}. See you then!"
    );
    // Telephony: SSML stripped, transfer (type 15), other platforms ignored.
    assert_eq!(
        say(b, "human", "en"),
        vec!["Transferring you to the front desk."]
    );
    let t = b.flow.states["human"].transitions[0]
        .transfer
        .as_deref()
        .unwrap();
    assert_eq!(b.transfer_targets[t].destination(), "tel:+15145550100");
    // End-of-conversation intent hangs up; the fallback intent is the no-match prompt.
    assert!(b.flow.states["goodbye"].transitions[0].end);
    assert_eq!(
        b.settings.no_match.prompts[0].get("fr", "en").unwrap(),
        "Pardon, pouvez-vous reformuler?"
    );
    assert!(
        matches!(&b.entities["weekday"], Entity::List { values: Localized::ByLang(m) } if m["fr"][0].synonyms == ["lundi"])
    );
    for w in [
        "SSML",
        "google messages",
        "custom_bye_event",
        "optional parameter `patient`",
    ] {
        assert!(warned(&i, w), "no warning about {w}: {:#?}", i.warnings);
    }
}

#[test]
fn lex_v2_fixture_maps_slots_confirmation_and_locales() {
    let i = import_messy("lex_v2/BankLine");
    let b = &i.bundle;
    assert_eq!(i.format, ExportFormat::LexV2);
    assert_eq!(
        (b.language(), b.bot.languages.clone()),
        ("en", vec!["es".to_string()])
    );
    // Slot references in utterances become sample values.
    let phrases = b.intents["CheckBalance"].phrases.get("en", "en").unwrap();
    assert!(
        phrases.contains(&"check my checking balance".to_string()),
        "{phrases:?}"
    );
    assert!(b.intents["CheckBalance"]
        .phrases
        .get("es", "en")
        .unwrap()
        .contains(&"cuál es mi saldo".to_string()));
    // Slots in priority order, prompts per language, retries, barge-in and timeout.
    let s = &b.flow.states["CheckBalance"];
    assert_eq!(say(b, "CheckBalance", "es"), vec!["Vamos a ver su saldo."]);
    assert_eq!(
        s.collect
            .iter()
            .map(|c| c.slot.as_str())
            .collect::<Vec<_>>(),
        vec!["AccountType", "Pin"]
    );
    assert_eq!(
        s.collect[0].prompt.get("es", "en").unwrap(),
        "¿Qué cuenta, corriente o ahorros?"
    );
    assert_eq!(s.collect[1].max_attempts, Some(4));
    assert_eq!(
        (s.barge_in, s.no_input_timeout_ms),
        (Some(false), Some(5000))
    );
    assert!(
        matches!(&b.entities["AccountTypes"], Entity::List { values: Localized::ByLang(m) } if m["es"][1].synonyms == ["ahorros"])
    );
    // Confirmation: yes -> closing and hang up; no -> declination, back to listening.
    let confirm = &b.flow.states["CheckBalance (confirm)"];
    assert_eq!(
        confirm.transitions[0].intent.as_deref(),
        Some("confirm_yes")
    );
    assert!(confirm.transitions[0].end);
    assert_eq!(confirm.transitions[1].to.as_deref(), Some("main"));
    assert_eq!(b.settings.dtmf.terminator, "#");
    assert_eq!(
        b.settings.no_match.prompts[0].get("en", "en").unwrap(),
        "Sorry, I can only help with balances."
    );
    for w in [
        "no greeting",
        "Lambda",
        "voice Joanna",
        "no text in es",
        "message variations",
    ] {
        assert!(warned(&i, w), "no warning about {w}: {:#?}", i.warnings);
    }
}

#[test]
fn rasa_fixture_maps_stories_forms_slot_mappings_and_tests() {
    let i = import::import_path(&fixture("rasa/cafe-bot")).unwrap();
    let b = &i.bundle;
    assert_eq!(i.format, ExportFormat::Rasa);
    assert_eq!(say(b, "start", "en"), vec!["Corner Cafe, good morning!"]);
    assert_eq!(
        say(b, "greet", "en"),
        vec![
            "Corner Cafe, good morning!",
            "You can order a coffee or ask about our hours."
        ]
    );
    // Annotations stripped; annotated values, synonyms and lookups make the entity.
    assert!(b.intents["order_coffee"]
        .phrases
        .get("en", "en")
        .unwrap()
        .contains(&"two cappuccinos please".to_string()));
    let Entity::List {
        values: Localized::One(drinks),
    } = &b.entities["drink"]
    else {
        panic!("drink is a list")
    };
    let names: Vec<&str> = drinks.iter().map(|v| v.value.as_str()).collect();
    assert!(
        names.contains(&"mocha") && names.contains(&"latte"),
        "{names:?}"
    );
    assert!(drinks
        .iter()
        .any(|v| v.value == "cappuccino" && v.synonyms.contains(&"capp".to_string())));
    // The form: slots with their utter_ask prompts, Duckling number, yes/no from intents.
    let form = &b.flow.states["order_coffee"];
    assert_eq!(
        form.collect
            .iter()
            .map(|c| c.slot.as_str())
            .collect::<Vec<_>>(),
        vec!["drink", "cups", "confirm"]
    );
    assert!(matches!(
        b.entities[&form.collect[1].entity],
        Entity::Digits { .. }
    ));
    assert_eq!(
        form.transitions[0].say.0[0].get("en", "en").unwrap(),
        "Your order is in. It will be ready in five minutes."
    );
    // Handoff action -> transfer; nlu_fallback -> no-match.
    assert!(b.flow.states["human_handoff"].transitions[0]
        .transfer
        .is_some());
    assert!(b.settings.no_match.prompts[0]
        .get("en", "en")
        .unwrap()
        .starts_with("Sorry, I did not get that."));
    assert_eq!(b.tests.len(), 4);
    for w in [
        "action_submit_order",
        "buttons",
        "2 variations",
        "interrupts a form",
        "transfer_target",
    ] {
        assert!(warned(&i, w), "no warning about {w}: {:#?}", i.warnings);
    }
}

/// Counts per real export, so a change in an importer shows up here.
#[test]
fn real_exports_import_with_their_counts() {
    let cases = [
        (
            "dialogflow-cx/lifeblood-donation-agent.zip",
            ExportFormat::DialogflowCx,
            3,
            28,
        ),
        (
            "dialogflow-cx/divebooker-agent.zip",
            ExportFormat::DialogflowCx,
            2,
            25,
        ),
        (
            "dialogflow-es/telephony-agent.zip",
            ExportFormat::DialogflowEs,
            5,
            110,
        ),
        (
            "lex-v2/OrderFlower-repeat-DRAFT-LexJson.zip",
            ExportFormat::LexV2,
            3,
            29,
        ),
        ("rasa/helpdesk-assistant", ExportFormat::Rasa, 17, 452),
    ];
    for (rel, format, intents, phrases) in cases {
        let i = import::import_path(&shared_export(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(i.format, format, "{rel}");
        assert_eq!(
            (i.stats.intents, i.stats.phrases),
            (intents, phrases),
            "{rel}: {:?}",
            i.stats
        );
        assert!(
            i.stats.prompts > 0 && i.stats.states > 0,
            "{rel}: {:?}",
            i.stats
        );
        assert!(
            !i.warnings.is_empty(),
            "{rel}: every real export uses something local bots cannot do"
        );
        eprintln!(
            "{rel}: {} intents, {} phrases, {} prompts, {} states, {} tests, {} warnings, {:.1} ms",
            i.stats.intents,
            i.stats.phrases,
            i.stats.prompts,
            i.stats.states,
            i.stats.tests,
            i.warnings.len(),
            i.ms
        );
    }
}

/// Each real export answers one of its own training phrases with its own words.
#[test]
fn real_exports_answer_their_own_training_phrase_in_chat() {
    let cli = Cli::new();
    let cases: [(&str, &str, &str); 6] = [
        (
            "dialogflow-cx/lifeblood-donation-agent.zip",
            "I'd like to take the quiz",
            "Your donation changes lives.",
        ),
        (
            "dialogflow-cx/divebooker-agent.zip",
            "Do you have any special offers for groups to Costa Rica?",
            "To assist you with that I need to collect the details of your travel",
        ),
        (
            "dialogflow-es/telephony-agent.zip",
            "yes",
            "I'll just need some information, starting with the full name",
        ),
        (
            "dialogflow-es/telephony-agent.zip",
            "i'd like to be transferred",
            "you'll be connected to the main line in a moment",
        ),
        (
            "lex-v2/OrderFlower-repeat-DRAFT-LexJson.zip",
            "I would like to order some flowers",
            "What type of flowers would you like to order?",
        ),
        (
            "rasa/helpdesk-assistant",
            "I want to talk to a person now",
            "It looks like you want to be transferred to a human agent.",
        ),
    ];
    for (rel, phrase, answer) in cases {
        let path = shared_export(rel);
        let lines = cli.chat(path.to_str().unwrap(), &[phrase]);
        assert!(
            lines.iter().any(|l| l.contains(answer)),
            "{rel}: \"{phrase}\" should get \"{answer}\"; the bot said {lines:#?}"
        );
    }
    // The ES transfer intent hands the call to its number.
    let lines = cli.chat(
        shared_export("dialogflow-es/telephony-agent.zip")
            .to_str()
            .unwrap(),
        &["i'd like to be transferred"],
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("[transfer to") && l.contains("tel:+12023334444")),
        "{lines:#?}"
    );
}

/// A CX export whose routes lead nowhere is refused with one short line
/// per problem, in CX's words (page, flow, route), with a "did you mean",
/// no list of every page repeated per line, and whose gap each one is: a
/// typo'd page is the export's, an unknown built-in target is Understudy's.
#[test]
fn refusals_name_pages_suggest_names_and_say_whose_gap_it_is() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("dialogflow_cx/pizza-line"), dir.path());
    let flow = dir.path().join("flows/Default Start Flow");
    edit(
        &flow.join("Default Start Flow.json"),
        "\"targetPage\": \"Order\"",
        "\"targetPage\": \"Ordr\"",
    );
    edit(
        &flow.join("pages/Order.json"),
        "\"targetPage\": \"END_SESSION\"",
        "\"targetPage\": \"END_CONVERSATION\"",
    );
    let err = import::import_path(dir.path()).unwrap_err().to_string();
    let problems: Vec<&str> = err.lines().filter(|l| l.starts_with("  - ")).collect();
    assert!(problems.len() >= 2, "{err}");
    for p in &problems {
        assert!(
            p.starts_with("  - [export] ") || p.starts_with("  - [Understudy] "),
            "each problem says whose gap it is: {p}"
        );
        assert!(p.len() < 300, "one short line per problem: {p}");
        assert!(
            !p.contains("known:"),
            "names are listed once, not per line: {p}"
        );
    }
    let typo = problems
        .iter()
        .find(|p| p.contains("page \"Ordr\""))
        .unwrap_or_else(|| panic!("the typo is named as a page: {err}"));
    assert!(
        typo.contains("[export]") && typo.contains("did you mean") && typo.contains("Order"),
        "{typo}"
    );
    assert!(typo.contains("flow \"Default Start Flow\""), "{typo}");
    let builtin = problems
        .iter()
        .find(|p| p.contains("END_CONVERSATION"))
        .unwrap_or_else(|| panic!("the unknown built-in target is reported: {err}"));
    assert!(
        builtin.contains("[Understudy]") && builtin.contains("page \"Order\""),
        "{builtin}"
    );
    assert!(
        err.contains("export the whole bot again") && err.contains("this build does not carry"),
        "{err}"
    );
    assert!(err.matches("known:").count() <= 1, "{err}");
}

/// Rasa financial-demo: a bank transfer is not a call transfer, stories that
/// start after a bot action continue it, and test stories stop where the
/// bot's custom actions decide what follows.
#[test]
fn rasa_money_transfers_stories_after_actions_and_replayable_tests() {
    let i = import::import_path(&shared_export("rasa-financial-demo")).unwrap();
    let b = &i.bundle;
    let transfer = &b.flow.states["transfer_money"];
    assert!(
        transfer.transitions.iter().all(|t| t.transfer.is_none()),
        "`action_transfer_money` moves money; it must not hand the call to an agent: {:?}",
        transfer.transitions
    );
    assert!(
        !transfer.collect.is_empty(),
        "the transfer form asks its questions"
    );
    // "after action_show_balance, affirm -> utter_ok"
    let balance = &b.flow.states["check_balance"];
    let ok = balance
        .transitions
        .iter()
        .find(|t| t.intent.as_deref() == Some("affirm"))
        .expect("the balance state listens for affirm (a story that starts after its action)");
    assert_eq!(
        say(b, ok.to.as_deref().unwrap(), "en"),
        vec!["👍".to_string()]
    );
    // "pay credit card + switch to transfer money ...": replayed up to the
    // turn whose custom action sets the next form.
    let t = b
        .tests
        .iter()
        .find(|t| {
            t.name == "pay credit card + switch to transfer money, affirm + switch back, deny"
        })
        .expect("the test story is imported");
    let intents: Vec<_> = t.turns.iter().map(|t| t.intent.as_deref()).collect();
    assert_eq!(intents, vec![Some("pay_cc"), Some("transfer_money")]);
    assert!(warned(
        &i,
        "is replayed up to turn 2: custom action `action_switch_forms_ask` sets what follows"
    ));
    // The happy path skips the form's questions: nothing after it is checked.
    let happy = b
        .tests
        .iter()
        .find(|t| t.name == "transfer money happy path w/o recipient")
        .unwrap();
    assert_eq!(happy.turns.len(), 1);
    assert_eq!(happy.turns[0].action, None, "no call transfer expected");
}
