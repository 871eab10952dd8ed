//! `understudy bench`: the voice pipeline's latency and accuracy, measured.
//!
//! A fixed set of caller utterances for the demo bot is synthesized with
//! espeak-ng (several voices), once at 16 kHz and once as 8 kHz G.711 mu-law
//! telephony audio. Each utterance is one call through the real session
//! (fed in real time, as a phone line would), then the same audio and text go
//! through the raw engines alone, so the pipeline's own overhead shows.

use crate::audio::{self, g711::Law, SAMPLE_RATE};
use crate::dialog::UserInput;
use crate::session::file_call::run_call;
use crate::session::SessionSetup;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// One benchmark utterance: what the caller says and what the bot should make of it.
pub struct Utterance {
    pub text: &'static str,
    pub intent: &'static str,
    /// espeak-ng voice, for speaker variety.
    pub voice: &'static str,
}

/// Held-out phrasings (not the demo bundle's training phrases).
pub const UTTERANCES: &[Utterance] = &[
    Utterance {
        text: "Hi, I want to know where my package is.",
        intent: "order_status",
        voice: "en-us",
    },
    Utterance {
        text: "Can you check the status of order 4 8 2 1 3?",
        intent: "order_status",
        voice: "en-us+m3",
    },
    Utterance {
        text: "My delivery hasn't shown up yet.",
        intent: "order_status",
        voice: "en-gb",
    },
    Utterance {
        text: "I'd like to track my order please.",
        intent: "order_status",
        voice: "en-us+f3",
    },
    Utterance {
        text: "I need to send back a jacket that doesn't fit.",
        intent: "returns",
        voice: "en-us",
    },
    Utterance {
        text: "How do I return something I bought?",
        intent: "returns",
        voice: "en-us+m3",
    },
    Utterance {
        text: "Can I get a refund for these shoes?",
        intent: "returns",
        voice: "en-gb",
    },
    Utterance {
        text: "What is your return policy?",
        intent: "returns",
        voice: "en-us+f3",
    },
    Utterance {
        text: "What time do you open tomorrow?",
        intent: "store_hours",
        voice: "en-us",
    },
    Utterance {
        text: "Are you open on the weekend?",
        intent: "store_hours",
        voice: "en-us+m3",
    },
    Utterance {
        text: "When does the store close today?",
        intent: "store_hours",
        voice: "en-gb",
    },
    Utterance {
        text: "What are your opening hours?",
        intent: "store_hours",
        voice: "en-us+f3",
    },
    Utterance {
        text: "Let me talk to a real person.",
        intent: "agent",
        voice: "en-us",
    },
    Utterance {
        text: "Can you transfer me to a representative?",
        intent: "agent",
        voice: "en-us+m3",
    },
    Utterance {
        text: "I want to speak with customer service.",
        intent: "agent",
        voice: "en-gb",
    },
    Utterance {
        text: "Put me through to an agent please.",
        intent: "agent",
        voice: "en-us+f3",
    },
    Utterance {
        text: "That's all I needed, goodbye.",
        intent: "goodbye",
        voice: "en-us",
    },
    Utterance {
        text: "Thanks for your help, bye.",
        intent: "goodbye",
        voice: "en-us+m3",
    },
    Utterance {
        text: "No, that's everything. Have a good day.",
        intent: "goodbye",
        voice: "en-gb",
    },
    Utterance {
        text: "Okay, I'm done. Bye bye.",
        intent: "goodbye",
        voice: "en-us+f3",
    },
];

/// How the caller's audio reaches the appliance.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// 16 kHz linear PCM (WebRTC, wideband SIP).
    Wideband,
    /// 8 kHz G.711 mu-law, as a phone line carries it.
    Telephony8k,
}

/// Synthesize `text` with espeak-ng, at the canonical rate, with the lead-in
/// and tail silence a caller's line has.
pub fn synthesize_caller(text: &str, voice: &str, dir: &Path, name: &str) -> Result<Vec<i16>> {
    let path = dir.join(format!("{name}.wav"));
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", "160", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .context("cannot run espeak-ng (apt-get install espeak-ng)")?;
    anyhow::ensure!(status.success(), "espeak-ng failed for {text:?}");
    let speech = audio::wav::read_canonical(&path)?;
    let silence = |ms: f64| vec![0i16; audio::ms_to_samples(ms, SAMPLE_RATE)];
    Ok([silence(300.0), speech, silence(100.0)].concat())
}

/// The same audio after a phone line: 8 kHz, mu-law, and back to 16 kHz.
pub fn through_telephone_line(samples: &[i16]) -> Vec<i16> {
    let narrow = audio::resample(samples, SAMPLE_RATE, 8000);
    let decoded = Law::Mu.decode(&Law::Mu.encode(&narrow));
    audio::resample(&decoded, 8000, SAMPLE_RATE)
}

/// Percentile by nearest rank (p in 0..=100); `None` for no samples.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// Words for WER: lower case, no punctuation, digits one by one, number words as digits.
pub fn normalize_words(text: &str) -> Vec<String> {
    const NUMBERS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let mut words = Vec::new();
    for word in cleaned.split_whitespace() {
        let word = word.trim_matches('\'');
        if word.chars().all(|c| c.is_ascii_digit()) {
            words.extend(word.chars().map(|c| c.to_string()));
        } else if let Some(d) = NUMBERS.iter().position(|n| *n == word) {
            words.push(d.to_string());
        } else if !word.is_empty() {
            words.push(word.to_string());
        }
    }
    words
}

/// Word-level edit distance between reference and hypothesis.
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut row: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if r == h {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[hypothesis.len()]
}

/// One utterance's result on one channel.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub channel: Channel,
    pub text: String,
    pub expected_intent: String,
    pub transcript: String,
    pub intent: Option<String>,
    pub intent_correct: bool,
    pub word_errors: usize,
    pub reference_words: usize,
    pub speech_ms: f64,
    /// Pipeline stages, ms.
    pub endpoint_ms: Option<f64>,
    pub stt_ms: Option<f64>,
    pub dialog_ms: Option<f64>,
    pub tts_first_audio_ms: Option<f64>,
    pub voice_to_voice_ms: Option<f64>,
    pub speculative_stt: bool,
    /// The same work on the raw engines, ms.
    pub raw_stt_ms: f64,
    pub raw_dialog_ms: f64,
    pub raw_tts_first_audio_ms: f64,
}

/// p50/p95 of one measure.
#[derive(Debug, Clone, Serialize)]
pub struct Stat {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub n: usize,
}

impl Stat {
    fn of(values: impl Iterator<Item = f64>) -> Stat {
        let v: Vec<f64> = values.collect();
        Stat {
            p50: percentile(&v, 50.0),
            p95: percentile(&v, 95.0),
            n: v.len(),
        }
    }
}

/// Aggregates for one channel.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelSummary {
    pub channel: Channel,
    pub utterances: usize,
    pub intent_accuracy: f64,
    pub wer: f64,
    pub endpoint_ms: Stat,
    pub stt_ms: Stat,
    pub dialog_ms: Stat,
    pub tts_first_audio_ms: Stat,
    pub voice_to_voice_ms: Stat,
    /// Voice-to-voice minus the endpointing wait: the pipeline's processing.
    pub processing_ms: Stat,
    pub raw_stt_ms: Stat,
    pub raw_dialog_ms: Stat,
    pub raw_tts_first_audio_ms: Stat,
    /// STT + dialog + first audio on the raw engines, per utterance.
    pub raw_processing_ms: Stat,
    /// (pipeline processing p50 - raw processing p50) / raw processing p50.
    /// Negative when the pipeline's overlap (transcribing during the
    /// endpointing pause, pre-rendered prompts) beats running the engines
    /// one after another.
    pub overhead_pct: Option<f64>,
    /// Per turn, the processing time not spent waiting on an engine
    /// (processing - stt - dialog - first audio): queues, frame pacing,
    /// the session's own work.
    pub glue_ms: Stat,
    /// glue p50 / processing p50 (none when processing p50 is under 50 ms).
    pub glue_pct: Option<f64>,
}

/// The whole report (`--out` JSON).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub pack: String,
    pub machine: String,
    pub threads: crate::config::Threads,
    pub summaries: Vec<ChannelSummary>,
    pub samples: Vec<Sample>,
}

fn summarize(channel: Channel, samples: &[Sample]) -> ChannelSummary {
    let s: Vec<&Sample> = samples.iter().filter(|s| s.channel == channel).collect();
    let n = s.len().max(1) as f64;
    let words: usize = s.iter().map(|x| x.reference_words).sum();
    let errors: usize = s.iter().map(|x| x.word_errors).sum();
    let processing = |x: &Sample| match (x.voice_to_voice_ms, x.endpoint_ms) {
        (Some(v), Some(e)) => Some(v - e),
        _ => None,
    };
    let raw_processing = |x: &Sample| {
        x.raw_stt_ms
            + x.raw_dialog_ms
            + if x.tts_first_audio_ms.unwrap_or(0.0) > 1.0 {
                x.raw_tts_first_audio_ms
            } else {
                0.0
            }
    };
    let processing_ms = Stat::of(s.iter().filter_map(|x| processing(x)));
    let raw_processing_ms = Stat::of(s.iter().map(|x| raw_processing(x)));
    let overhead_pct = match (processing_ms.p50, raw_processing_ms.p50) {
        (Some(p), Some(r)) if r > 0.0 => Some((p - r) / r * 100.0),
        _ => None,
    };
    let glue = |x: &Sample| {
        let engines = x.stt_ms.unwrap_or(0.0)
            + x.dialog_ms.unwrap_or(0.0)
            + x.tts_first_audio_ms.unwrap_or(0.0);
        processing(x).map(|p| (p - engines).max(0.0))
    };
    let glue_ms = Stat::of(s.iter().filter_map(|x| glue(x)));
    // A share of almost nothing says nothing: only when there is processing to share.
    let glue_pct = match (glue_ms.p50, processing_ms.p50) {
        (Some(g), Some(p)) if p >= 50.0 => Some(g / p * 100.0),
        _ => None,
    };
    ChannelSummary {
        channel,
        utterances: s.len(),
        intent_accuracy: s.iter().filter(|x| x.intent_correct).count() as f64 / n,
        wer: if words == 0 {
            0.0
        } else {
            errors as f64 / words as f64
        },
        endpoint_ms: Stat::of(s.iter().filter_map(|x| x.endpoint_ms)),
        stt_ms: Stat::of(s.iter().filter_map(|x| x.stt_ms)),
        dialog_ms: Stat::of(s.iter().filter_map(|x| x.dialog_ms)),
        tts_first_audio_ms: Stat::of(s.iter().filter_map(|x| x.tts_first_audio_ms)),
        voice_to_voice_ms: Stat::of(s.iter().filter_map(|x| x.voice_to_voice_ms)),
        processing_ms,
        raw_stt_ms: Stat::of(s.iter().map(|x| x.raw_stt_ms)),
        raw_dialog_ms: Stat::of(s.iter().map(|x| x.raw_dialog_ms)),
        raw_tts_first_audio_ms: Stat::of(s.iter().map(|x| x.raw_tts_first_audio_ms)),
        raw_processing_ms,
        overhead_pct,
        glue_ms,
        glue_pct,
    }
}

/// Run one utterance through the whole session, then through the raw engines.
async fn measure(
    setup: &Arc<SessionSetup>,
    u: &Utterance,
    channel: Channel,
    audio_in: &[i16],
) -> Result<Sample> {
    quiesce(&setup.engines).await;
    let mut outcome = None;
    run_call(
        setup.clone(),
        "bench",
        std::slice::from_ref(&audio_in.to_vec()),
        |turn, o| {
            if turn == 1 {
                outcome = Some(o);
            }
        },
    )
    .await;
    let outcome = outcome.context("the call ended before the caller's turn")?;
    let report = outcome
        .reports
        .into_iter()
        .next()
        .context("the bot did not answer the caller's turn")?;
    let reference = normalize_words(u.text);
    let hypothesis = normalize_words(&report.transcript);

    // The raw engines on the same input: STT on the detected speech, the
    // dialog on the transcript, TTS on the reply.
    quiesce(&setup.engines).await;
    let stt = setup.engines.stt.as_ref().context("STT not running")?;
    let (start_ms, end_ms) = report
        .speech_ms
        .unwrap_or((0.0, audio::samples_to_ms(audio_in.len(), SAMPLE_RATE)));
    let from = audio::ms_to_samples((start_ms - 200.0).max(0.0), SAMPLE_RATE);
    let to = audio::ms_to_samples(end_ms + 160.0, SAMPLE_RATE).min(audio_in.len());
    let t = Instant::now();
    let _ = stt
        .transcribe(
            &audio_in[from..to.max(from)],
            setup.settings.stt_prompt.as_deref(),
        )
        .await?;
    let raw_stt_ms = t.elapsed().as_secs_f64() * 1e3;
    quiesce(&setup.engines).await;
    let (mut conversation, _) = setup.bot.start();
    let t = Instant::now();
    let _ = setup
        .bot
        .respond(
            &mut conversation,
            UserInput::Text(report.transcript.clone()),
        )
        .await?;
    let raw_dialog_ms = t.elapsed().as_secs_f64() * 1e3;
    quiesce(&setup.engines).await;
    let tts = setup.engines.tts.as_ref().context("TTS not running")?;
    let t = Instant::now();
    let mut stream = tts
        .stream(if report.reply.is_empty() {
            "Okay."
        } else {
            &report.reply
        })
        .await?;
    let _ = stream.next().await;
    let raw_tts_first_audio_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(stream);

    Ok(Sample {
        channel,
        text: u.text.to_string(),
        expected_intent: u.intent.to_string(),
        intent_correct: report.intent.as_deref() == Some(u.intent),
        intent: report.intent.clone(),
        word_errors: word_errors(&reference, &hypothesis),
        reference_words: reference.len(),
        transcript: report.transcript.clone(),
        speech_ms: end_ms - start_ms,
        endpoint_ms: report.timings_ms.endpoint,
        stt_ms: report.timings_ms.stt,
        dialog_ms: report.timings_ms.dialog,
        tts_first_audio_ms: report.timings_ms.tts_first_audio,
        voice_to_voice_ms: report.timings_ms.voice_to_voice,
        speculative_stt: report.timings_ms.speculative_stt,
        raw_stt_ms,
        raw_dialog_ms,
        raw_tts_first_audio_ms,
    })
}

/// Wait until no worker is busy: a call's reply is still being rendered
/// after its first audio (the caller would be listening to it), and timing
/// the next step against that would measure the contention, not the step.
async fn quiesce(engines: &crate::engines::Engines) {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while engines.workers().iter().any(|w| w.in_flight() > 0) && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Run the benchmark on a ready session setup.
pub async fn run(
    setup: Arc<SessionSetup>,
    pack: &str,
    threads: crate::config::Threads,
    limit: Option<usize>,
) -> Result<BenchReport> {
    let dir = tempfile::tempdir()?;
    let utterances = &UTTERANCES[..limit.unwrap_or(UTTERANCES.len()).min(UTTERANCES.len())];
    let mut samples = Vec::new();
    for (i, u) in utterances.iter().enumerate() {
        let wide = synthesize_caller(u.text, u.voice, dir.path(), &format!("u{i}"))?;
        let narrow = through_telephone_line(&wide);
        for (channel, audio_in) in [(Channel::Wideband, &wide), (Channel::Telephony8k, &narrow)] {
            let sample = measure(&setup, u, channel, audio_in).await?;
            eprintln!(
                "  [{:>2}/{}] {:<11} {:<13} {} v2v {:>5} ms  \"{}\"",
                i + 1,
                utterances.len(),
                format!("{channel:?}"),
                sample.intent.as_deref().unwrap_or("-"),
                if sample.intent_correct { "ok " } else { "BAD" },
                sample
                    .voice_to_voice_ms
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_else(|| "-".into()),
                sample.transcript
            );
            samples.push(sample);
        }
    }
    let summaries = [Channel::Wideband, Channel::Telephony8k]
        .iter()
        .map(|c| summarize(*c, &samples))
        .collect();
    Ok(BenchReport {
        pack: pack.to_string(),
        machine: machine_description(),
        threads,
        summaries,
        samples,
    })
}

fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{} x {cpu}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    )
}

/// The report as a table.
pub fn render(report: &BenchReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let f = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "pack {} on {}", report.pack, report.machine);
    for s in &report.summaries {
        let _ = writeln!(
            out,
            "\n{:?}: {} utterances, intent accuracy {:.1} %, WER {:.1} %",
            s.channel,
            s.utterances,
            s.intent_accuracy * 100.0,
            s.wer * 100.0
        );
        let _ = writeln!(out, "  {:<28} {:>7} {:>7}", "stage (ms)", "p50", "p95");
        for (name, stat) in [
            ("endpoint wait", &s.endpoint_ms),
            ("stt (after endpoint)", &s.stt_ms),
            ("dialog", &s.dialog_ms),
            ("tts first audio", &s.tts_first_audio_ms),
            ("voice-to-voice", &s.voice_to_voice_ms),
            ("processing (v2v - endpoint)", &s.processing_ms),
            ("raw stt", &s.raw_stt_ms),
            ("raw dialog", &s.raw_dialog_ms),
            ("raw tts first audio", &s.raw_tts_first_audio_ms),
            ("raw processing", &s.raw_processing_ms),
        ] {
            let _ = writeln!(out, "  {:<28} {:>7} {:>7}", name, f(stat.p50), f(stat.p95));
        }
        let _ = writeln!(
            out,
            "  pipeline vs raw engines run one after another (p50): {} %",
            f(s.overhead_pct)
        );
        let _ = writeln!(
            out,
            "  pipeline's own time (processing minus engine waits): p50 {} ms, p95 {} ms = {} % of processing",
            f(s.glue_ms.p50),
            f(s.glue_ms.p95),
            f(s.glue_pct)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn wer_normalizes_numbers_and_punctuation() {
        let r = normalize_words("Can you check the status of order 4 8 2 1 3?");
        let h = normalize_words("can you check the status of order four eight two one three");
        assert_eq!(word_errors(&r, &h), 0);
        let h2 = normalize_words("Can you check status of order 48213");
        assert_eq!(word_errors(&r, &h2), 1);
        assert_eq!(
            word_errors(&normalize_words("a b c"), &normalize_words("x b c d")),
            2
        );
    }

    #[test]
    fn telephone_line_keeps_length_and_speech_band() {
        let tone: Vec<i16> = (0..16000)
            .map(|i| {
                ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 16000.0).sin() * 8000.0) as i16
            })
            .collect();
        let out = through_telephone_line(&tone);
        assert!((out.len() as i64 - 16000).abs() <= 4);
        let db_in = audio::rms_dbfs(&tone);
        let db_out = audio::rms_dbfs(&out[400..15600]);
        assert!((db_in - db_out).abs() < 1.0, "{db_in} vs {db_out}");
    }
}
