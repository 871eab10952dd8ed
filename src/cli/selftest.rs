//! `understudy selftest`: is this box able to take calls? Checks every model file's sha256,
//! starts every engine and asks each a real question, runs one synthetic call end to end
//! through the session (the bot's greeting, a caller turn spoken by the local voice, the
//! reply), and sends SIP OPTIONS to the configured SIP port. Prints a pass/fail table and
//! exits non-zero when any check fails.

use crate::audio::{resample::resample, SAMPLE_RATE};
use crate::config::Config;
use crate::engines::{ChatMessage, GenerateRequest};
use crate::transport::file::run_call;
use anyhow::Result;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Options of `understudy selftest`.
#[derive(clap::Args, Debug)]
pub struct SelftestArgs {
    /// SIP address to send OPTIONS to (`host:port`; default: `sip.listen` of the configuration,
    /// loopback when it listens on every address). `--sip off` skips the check.
    #[arg(long)]
    pub sip: Option<String>,
    /// What the synthetic caller says (spoken by the local voice, heard by the local STT).
    #[arg(long, default_value = "What time do you open tomorrow?")]
    pub caller_says: String,
}

/// One line of the table.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    ms: f64,
}

/// Run the checks, print the table; an error when any check failed.
pub async fn run(args: SelftestArgs, config: &Config) -> Result<()> {
    let mut checks = Vec::new();
    let mut record = |name: &'static str, started: Instant, outcome: Result<String, String>| {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let (ok, detail) = match outcome {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        tracing::info!(check = name, ok, ms, "{detail}");
        checks.push(Check {
            name,
            ok,
            detail,
            ms,
        });
    };

    let started = Instant::now();
    let (dir, pack) = (config.models.dir.clone(), config.models.pack.clone());
    let verified = tokio::task::spawn_blocking(move || understudy_models::verify(&dir, &pack))
        .await?
        .map_err(|e| format!("{e:#}"))
        .and_then(|report| {
            if report.is_ok() {
                Ok(format!(
                    "pack {}: {} files, sha256 verified",
                    config.models.pack,
                    report.files.len()
                ))
            } else {
                Err(format!(
                    "{report}\n(re-fetch with `understudy models fetch --pack {}`)",
                    config.models.pack
                ))
            }
        });
    let models_ok = verified.is_ok();
    record("model files", started, verified);

    if models_ok {
        engine_and_call_checks(&args, config, &mut record).await;
    }

    let started = Instant::now();
    match sip_target(args.sip.as_deref(), &config.sip.listen) {
        None => record("SIP OPTIONS", started, Ok("skipped (SIP is off)".into())),
        Some(addr) => {
            let uri = format!("sip:selftest@{addr}");
            let answered = crate::continuity::probe::options(&uri, Duration::from_secs(3))
                .await
                .map(|()| format!("{addr} answered 200 (ready for calls)"))
                .map_err(|e| {
                    format!("{addr}: {e} (is `understudy serve` running and ready? `systemctl status understudy`)")
                });
            record("SIP OPTIONS", started, answered);
        }
    }

    print_table(&checks);
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", checks.len());
    }
    Ok(())
}

/// Start the bot and every engine, ask each engine one question, then run one call.
async fn engine_and_call_checks(
    args: &SelftestArgs,
    config: &Config,
    record: &mut impl FnMut(&'static str, Instant, Result<String, String>),
) {
    let started = Instant::now();
    let setup = match super::runtime::session_setup(config, None).await {
        Ok(setup) => setup,
        Err(e) => {
            record("engines and bot load", started, Err(format!("{e:#}")));
            return;
        }
    };
    record(
        "engines and bot load",
        started,
        Ok(format!(
            "{} workers ready, bot {:?}",
            setup.engines.workers().len(),
            setup.bot.bundle().bot.name
        )),
    );
    let engines = &setup.engines;

    // TTS speaks the caller's line; STT must hear it back; VAD must find speech in it.
    let started = Instant::now();
    let tts = engines.tts.as_ref().expect("all engines started");
    let caller = {
        match tts.synthesize(&args.caller_says).await {
            Ok(chunk) if !chunk.samples.is_empty() => {
                let audio = resample(&chunk.samples, chunk.sample_rate, SAMPLE_RATE);
                let secs = audio.len() as f64 / f64::from(SAMPLE_RATE);
                record("TTS speaks", started, Ok(format!("{secs:.1} s of speech")));
                Some(audio)
            }
            Ok(_) => {
                record("TTS speaks", started, Err("no audio".into()));
                None
            }
            Err(e) => {
                record("TTS speaks", started, Err(e.to_string()));
                None
            }
        }
    };
    if let Some(audio) = &caller {
        let started = Instant::now();
        let vad = engines.vad.as_ref().expect("all engines started");
        let outcome = match vad.probs(audio, None).await {
            Ok((probs, _)) => {
                let speech = probs.iter().filter(|p| **p >= 0.5).count();
                if speech > 0 {
                    Ok(format!("speech in {speech} of {} chunks", probs.len()))
                } else {
                    Err("found no speech in the local voice's audio".into())
                }
            }
            Err(e) => Err(e.to_string()),
        };
        record("VAD hears speech", started, outcome);

        let started = Instant::now();
        let stt = engines.stt.as_ref().expect("all engines started");
        let outcome = match stt.transcribe(audio, None).await {
            Ok(t) if shares_words(&t.text, &args.caller_says) => Ok(format!("{:?}", t.text)),
            Ok(t) => Err(format!("heard {:?} for {:?}", t.text, args.caller_says)),
            Err(e) => Err(e.to_string()),
        };
        record("STT transcribes", started, outcome);
    }

    let started = Instant::now();
    let llm = engines.llm.as_ref().expect("all engines started");
    let request = GenerateRequest {
        messages: vec![ChatMessage::new("user", "Say OK.")],
        max_tokens: 8,
        ..GenerateRequest::default()
    };
    let outcome = match llm.generate(request).await {
        Ok(g) if g.completion_tokens > 0 => Ok(format!(
            "{} tokens: {:?}",
            g.completion_tokens,
            g.text.trim()
        )),
        Ok(_) => Err("generated nothing".into()),
        Err(e) => Err(e.to_string()),
    };
    record("LLM generates", started, outcome);

    let started = Instant::now();
    let embed = engines.embed.as_ref().expect("all engines started");
    let outcome = match embed.embed(std::slice::from_ref(&args.caller_says)).await {
        Ok(v) if v.first().is_some_and(|e| !e.is_empty()) => {
            Ok(format!("{} dimensions", v[0].len()))
        }
        Ok(_) => Err("empty embedding".into()),
        Err(e) => Err(e.to_string()),
    };
    record("embeddings", started, outcome);

    if let Some(audio) = caller {
        let started = Instant::now();
        let mut turns = Vec::new();
        run_call(setup.clone(), "selftest", &[audio], |turn, outcome| {
            turns.push((turn, outcome));
        })
        .await;
        let greeted = turns
            .iter()
            .any(|(t, o)| *t == 0 && !o.bot_audio.is_empty());
        let answered = turns.iter().find(|(t, _)| *t == 1);
        let outcome = match answered {
            _ if !greeted => Err("the bot did not greet".to_string()),
            Some((_, o)) if !o.bot_audio.is_empty() && !o.timed_out => {
                let report = o.reports.last();
                Ok(format!(
                    "caller {:?} -> intent {}, reply {:?}",
                    report.map(|r| r.transcript.as_str()).unwrap_or(""),
                    report.and_then(|r| r.intent.as_deref()).unwrap_or("-"),
                    report.map(|r| r.reply.as_str()).unwrap_or("")
                ))
            }
            Some(_) => Err("the bot did not answer the caller in time".into()),
            None => Err("the call ended before the caller's turn".into()),
        };
        record("synthetic call", started, outcome);
    }
    setup.engines.shutdown();
}

/// Where to send OPTIONS: `--sip`, else the configured listen address (loopback for a
/// wildcard); `None` when SIP is off.
fn sip_target(flag: Option<&str>, listen: &str) -> Option<String> {
    let chosen = flag.unwrap_or(listen);
    if chosen.eq_ignore_ascii_case("off") {
        return None;
    }
    match chosen.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let loopback = if addr.is_ipv4() { "127.0.0.1" } else { "[::1]" };
            Some(format!("{loopback}:{}", addr.port()))
        }
        _ => Some(chosen.to_string()),
    }
}

/// Whether the transcript carries at least half of the said words (a voice check, not a WER).
fn shares_words(heard: &str, said: &str) -> bool {
    let heard = crate::dialog::text::words(heard);
    let said = crate::dialog::text::words(said);
    let common = said.iter().filter(|w| heard.contains(w)).count();
    !said.is_empty() && common * 2 >= said.len()
}

fn print_table(checks: &[Check]) {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in checks {
        let mark = if c.ok { "PASS" } else { "FAIL" };
        let mut lines = c.detail.lines();
        println!(
            "{mark}  {:width$}  {:>7.0} ms  {}",
            c.name,
            c.ms,
            lines.next().unwrap_or("")
        );
        for more in lines {
            println!("{:w$}{more}", "", w = width + 22);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_target_uses_loopback_for_a_wildcard_listen() {
        assert_eq!(
            sip_target(None, "0.0.0.0:5060").as_deref(),
            Some("127.0.0.1:5060")
        );
        assert_eq!(sip_target(None, "[::]:5070").as_deref(), Some("[::1]:5070"));
        assert_eq!(
            sip_target(Some("10.1.2.3:5060"), "0.0.0.0:5060").as_deref(),
            Some("10.1.2.3:5060")
        );
        assert_eq!(sip_target(None, "off"), None);
        assert_eq!(sip_target(Some("off"), "0.0.0.0:5060"), None);
    }

    #[test]
    fn a_transcript_must_share_half_the_words() {
        assert!(shares_words(
            "What time do you open tomorrow",
            "What time do you open tomorrow?"
        ));
        assert!(!shares_words(
            "thanks for watching",
            "What time do you open tomorrow?"
        ));
    }
}
