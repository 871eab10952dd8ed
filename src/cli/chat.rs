//! `understudy chat`: talk to the bot in text, for bot designers. Each line
//! on stdin is a caller turn: text, `#keys` for DTMF (`#0`, `#48213`), or an
//! empty line for silence (no input). Replies go to stdout as `bot: ...`, or
//! with `--json` as one JSON object per turn; how each turn was decided
//! (intent, stage, confidence, time) goes to stderr in plain mode.

use super::runtime;
use crate::config::Config;
use crate::dialog::{testing, Action, Bot, BotTurn, Conversation, Nlu, UserInput};
use crate::engines::{EngineSet, Engines};
use anyhow::{Context, Result};
use serde_json::json;
use std::io::{IsTerminal, Write};
use tokio::io::{AsyncBufReadExt, BufReader};

/// `understudy chat` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ChatArgs {
    /// What to talk to: a bundle file (understudy-bundle/1), a cloud bot export (zip or
    /// folder: Dialogflow CX/ES, Lex V2, Rasa; imported on the fly), or a stored sync version
    /// (id, unique prefix, or `active`). Default: the active synced version, else the
    /// configured bundle (`[bot] bundle`), else the built-in demo bot; the first line printed
    /// names the bot.
    #[arg(long, value_name = "PATH|VERSION")]
    pub bundle: Option<String>,
    /// Print one JSON object per turn: user, intent, confidence, matched_by, reply, action, asked,
    /// slots, timings_ms (and the facts and guard verdict of knowledge answers).
    #[arg(long)]
    pub json: bool,
    /// Do not start the LLM: rules and embeddings only; knowledge answers speak the best fact.
    #[arg(long)]
    pub no_llm: bool,
    /// Do not start the embedding engine: rules (and the LLM) only.
    #[arg(long)]
    pub no_embed: bool,
    /// Conversation language (default: the bundle's).
    #[arg(long)]
    pub language: Option<String>,
    /// Replay the bundle's test conversations and report each, instead of chatting.
    #[arg(long)]
    pub test: bool,
}

/// Run `understudy chat`: talk to the chosen bot on stdin/stdout, or replay its tests.
pub async fn run(args: ChatArgs, config: &Config) -> Result<()> {
    // The same choice as serve, converse and bench (src/sync/choice.rs).
    let chosen = crate::sync::choice::choose_bot(config, args.bundle.as_deref())?;
    // JSON mode keeps stdout to one object per turn.
    if args.json {
        eprintln!("{chosen}");
    } else {
        println!("{chosen}");
    }
    let bundle = chosen.bundle;
    let set = EngineSet {
        embed: !args.no_embed,
        llm: !args.no_llm,
        ..Default::default()
    };
    // Rules-only chat needs no models at all.
    let engines = if set.embed || set.llm {
        runtime::start_engines(config, set).await?.0
    } else {
        Engines::default()
    };
    let nlu = Nlu {
        embed: engines.embed.clone(),
        llm: engines.llm.clone(),
        stt: None,
    };
    let lang = args
        .language
        .clone()
        .unwrap_or_else(|| bundle.language().to_string());
    let result = async {
        let bot = Bot::load_language(bundle, nlu, &lang)
            .await
            .context("cannot load the bot")?;
        if args.test {
            run_tests(&bot, args.json).await
        } else {
            chat(&bot, &args).await
        }
    }
    .await;
    engines.shutdown();
    result
}

async fn chat(bot: &Bot, args: &ChatArgs) -> Result<()> {
    let interactive = std::io::stdin().is_terminal() && !args.json;
    if interactive {
        eprintln!(
            "Chatting with {} (stages: {}). Type what a caller says; #digits sends keys (#0, #48213), an empty line is silence, Ctrl-D ends.",
            bot.bundle().name(),
            bot.stages().join(" -> ")
        );
    }
    let (mut conv, greeting) = bot.start();
    show(args.json, None, &greeting)?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while !conv.is_ended() {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next_line().await.context("cannot read stdin")? else {
            break;
        };
        let line = line.trim().to_string();
        let input = match line.strip_prefix('#') {
            Some(keys) => UserInput::Dtmf(keys.trim().to_string()),
            None if line.is_empty() => UserInput::NoInput,
            None => UserInput::Text(line.clone()),
        };
        match bot.respond(&mut conv, input).await {
            Ok(turn) => show(args.json, Some(&line), &turn)?,
            Err(error) => return safety_net(bot, &mut conv, args.json, &line, error),
        }
    }
    Ok(())
}

/// An engine failed: show what a caller would get (the apology and the
/// transfer), then fail with the engine's error.
fn safety_net(
    bot: &Bot,
    conv: &mut Conversation,
    json: bool,
    line: &str,
    error: crate::engines::EngineError,
) -> Result<()> {
    let turn = bot.safety_net(conv);
    show(json, Some(line), &turn)?;
    Err(anyhow::anyhow!("{error}"))
        .context("an engine failed mid-turn; a call would have been transferred (the safety net)")
}

fn show(json_mode: bool, user: Option<&str>, turn: &BotTurn) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json_mode {
        writeln!(out, "{}", turn_json(user, turn))?;
    } else {
        if !turn.say.is_empty() {
            writeln!(out, "bot: {}", turn.text())?;
        }
        match &turn.action {
            Action::Listen => {}
            Action::Transfer { target, reason } => writeln!(
                out,
                "bot: [transfer to {} ({target}), reason: {reason}]",
                turn.transfer_target.as_deref().unwrap_or("?")
            )?,
            Action::Hangup => writeln!(out, "bot: [hangup]")?,
        }
        eprintln!("   {}", annotation(turn));
    }
    out.flush()?;
    Ok(())
}

/// One line on how the turn was decided, for designers.
fn annotation(turn: &BotTurn) -> String {
    let mut parts = vec![];
    match (&turn.intent, &turn.answer) {
        (Some(intent), _) => parts.push(format!(
            "intent {intent} via {} ({:.2})",
            turn.matched_by.as_str(),
            turn.confidence
        )),
        (None, Some(answer)) => {
            let how = match &answer.guard {
                Some(v) if v.supported => "LLM answer, guard passed".to_string(),
                Some(v) => format!(
                    "guard rejected the LLM's {:?}: {}",
                    answer.llm_text.as_deref().unwrap_or(""),
                    v.problems.join("; ")
                ),
                None => "verbatim fact".into(),
            };
            parts.push(format!("knowledge {:.2} ({how})", turn.confidence));
        }
        (None, None) if !turn.asked.is_empty() => {
            parts.push(format!("confirming {}", turn.asked.join(" or ")))
        }
        (None, None) => parts.push(turn.outcome.as_str().to_string()),
    }
    parts.push(format!("state {}", turn.state));
    if let Some(slot) = &turn.listen.expecting_slot {
        parts.push(format!("asking for {slot}"));
    }
    if !turn.slots.is_empty() {
        let slots: Vec<String> = turn.slots.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(slots.join(" "));
    }
    let t = &turn.timings;
    parts.push(format!(
        "{:.0} ms (embed {:.0}, llm {:.0})",
        t.total_ms, t.embed_ms, t.llm_ms
    ));
    format!("[{}]", parts.join(" · "))
}

fn turn_json(user: Option<&str>, turn: &BotTurn) -> serde_json::Value {
    let t = &turn.timings;
    json!({
        "user": user,
        "intent": turn.intent,
        "confidence": turn.confidence,
        "matched_by": turn.matched_by,
        "reply": turn.text(),
        "say": turn.say,
        "action": turn.action.label(),
        "transfer": match &turn.action {
            Action::Transfer { target, reason } => json!({"target": turn.transfer_target, "uri": target, "reason": reason}),
            _ => serde_json::Value::Null,
        },
        "outcome": turn.outcome,
        "asked": turn.asked,
        "state": turn.state,
        "slots": turn.slots,
        "answer": turn.answer,
        "timings_ms": {"recognize": t.recognize_ms, "embed": t.embed_ms, "llm": t.llm_ms, "total": t.total_ms},
    })
}

async fn run_tests(bot: &Bot, json_mode: bool) -> Result<()> {
    let reports = testing::run_all(bot)
        .await
        .context("an engine failed while replaying the test conversations")?;
    let failed = reports.iter().filter(|r| !r.passed()).count();
    for report in &reports {
        if json_mode {
            println!(
                "{}",
                json!({"test": report.name, "passed": report.passed(), "failures": report.failures})
            );
        } else {
            println!(
                "{} {}",
                if report.passed() { "PASS" } else { "FAIL" },
                report.name
            );
            for failure in &report.failures {
                println!("     {failure}");
            }
        }
    }
    if !json_mode {
        println!(
            "{} of {} test conversations passed",
            reports.len() - failed,
            reports.len()
        );
    }
    anyhow::ensure!(failed == 0, "{failed} test conversation(s) failed");
    Ok(())
}
