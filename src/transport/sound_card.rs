//! This machine's sound card as a caller (`understudy talk`): the
//! microphone is the caller's voice and the speaker the caller's ear, so a
//! bot designer or IT staff can hear the local bot for themselves.
//!
//! The devices come from `cpal` (ALSA on Linux). Their callbacks run on the
//! audio thread and only move samples: the microphone's to a channel, the
//! [`Speaker`]'s queue to the output. [`run_call`] does the rest, the same
//! as every ingress: canonical frames to the session, its audio back with
//! playout marks answered when the speaker has played them, barge-in,
//! hang-up. Use a headset: a loudspeaker the microphone hears is a caller
//! talking over the bot.

use super::stream::{CallerAudio, Playout};
use crate::session::admission::Admitted;
use crate::session::{start_call, CallEvent, SessionAction, TurnReport};
use anyhow::{anyhow, bail, Context, Result};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SizedSample};
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Where the bot's audio waits for the output device; its callback takes
/// it out at the device's pace.
pub struct Speaker {
    playout: Mutex<Playout>,
    channels: usize,
    played: mpsc::UnboundedSender<u64>,
}

impl Speaker {
    /// A speaker at `rate` Hz with `channels` interleaved channels; the
    /// receiver gets each playout mark once its audio has been played.
    pub fn new(rate: u32, channels: usize) -> (Arc<Speaker>, mpsc::UnboundedReceiver<u64>) {
        let (played, marks) = mpsc::unbounded_channel();
        let speaker = Speaker {
            playout: Mutex::new(Playout::new(rate)),
            channels: channels.max(1),
            played,
        };
        (Arc::new(speaker), marks)
    }

    /// The output callback: fill `out` (interleaved) with the bot's audio,
    /// silence when there is none.
    pub fn fill(&self, out: &mut [f32]) {
        let frames = out.len() / self.channels;
        let mut playout = self.playout.lock().unwrap();
        let samples = playout.take(frames).unwrap_or_default();
        for (i, frame) in out.chunks_mut(self.channels).enumerate() {
            let v = samples.get(i).map_or(0.0, |s| *s as f32 / 32768.0);
            frame.fill(v);
        }
        for mark in playout.passed_marks() {
            let _ = self.played.send(mark);
        }
    }

    fn queue(&self, samples: &[i16], mark: u64) {
        self.playout.lock().unwrap().queue(samples, mark);
    }

    fn clear(&self) {
        self.playout.lock().unwrap().clear();
    }

    fn is_empty(&self) -> bool {
        self.playout.lock().unwrap().is_empty()
    }
}

/// Interleaved samples mixed down to mono.
pub fn downmix(data: &[f32], channels: usize) -> Vec<i16> {
    data.chunks(channels.max(1))
        .map(|frame| {
            let mean = frame.iter().sum::<f32>() / frame.len() as f32;
            (mean * 32768.0).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// The call's side of a device pair: what the microphone captured, and the speaker.
pub struct CardIo {
    /// Captured audio, mono, at `input_rate`.
    pub captured: mpsc::UnboundedReceiver<Vec<i16>>,
    /// The microphone's rate.
    pub input_rate: u32,
    /// Where the bot's audio goes.
    pub speaker: Arc<Speaker>,
    /// Marks the speaker has played.
    pub played: mpsc::UnboundedReceiver<u64>,
}

/// An open microphone and speaker; the streams stop when this is dropped.
pub struct SoundCard {
    _input: cpal::Stream,
    _output: cpal::Stream,
    /// The microphone's and the speaker's names.
    pub names: (String, String),
}

/// While held, the process's stderr goes nowhere: ALSA prints a dozen lines
/// of its own configuration errors when a machine has no sound card, and
/// our one message says it better.
struct QuietStderr {
    saved: libc::c_int,
}

impl QuietStderr {
    fn new() -> Option<QuietStderr> {
        // SAFETY: plain descriptor calls; every result is checked and the
        // original stderr is restored on drop.
        unsafe {
            let saved = libc::dup(2);
            if saved < 0 {
                return None;
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null < 0 {
                libc::close(saved);
                return None;
            }
            libc::dup2(null, 2);
            libc::close(null);
            Some(QuietStderr { saved })
        }
    }
}

impl Drop for QuietStderr {
    fn drop(&mut self) {
        // SAFETY: `saved` is the descriptor duplicated in `new`.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
    }
}

/// An error as the middle of a sentence.
fn clause(e: impl std::fmt::Display) -> String {
    e.to_string().trim_end_matches('.').to_string()
}

/// Every input and output device, as `input: NAME` / `output: NAME` lines.
pub fn devices() -> Result<Vec<String>> {
    let _quiet = QuietStderr::new();
    let host = cpal::default_host();
    let mut lines = vec![];
    for (kind, devices) in [
        ("input", host.input_devices()),
        ("output", host.output_devices()),
    ] {
        let devices = devices.map_err(|e| anyhow!("cannot list sound {kind} devices: {e}"))?;
        for device in devices {
            lines.push(format!(
                "{kind}: {}",
                device.name().unwrap_or_else(|_| "(unnamed)".into())
            ));
        }
    }
    Ok(lines)
}

/// What to tell someone whose machine has no usable sound device.
const NO_SOUND: &str = "This machine may have no sound card (a server usually has none): \
`understudy talk --list-devices` shows what there is. To call the bot from a laptop, open \
http://<appliance>:8080/phone in a browser (the softphone), or use SIP, a WebSocket media stream \
or AudioSocket (docs/ingress.md).";

fn find(
    kind: &str,
    name: Option<&str>,
    default: Option<cpal::Device>,
    all: impl FnOnce() -> Result<Vec<cpal::Device>, cpal::DevicesError>,
) -> Result<cpal::Device> {
    match name {
        None => default.ok_or_else(|| anyhow!("no default sound {kind} device. {NO_SOUND}")),
        Some(name) => all()
            .map_err(|e| anyhow!("cannot list sound {kind} devices: {}. {NO_SOUND}", clause(e)))?
            .into_iter()
            .find(|d| d.name().is_ok_and(|n| n == name))
            .ok_or_else(|| {
                anyhow!("no sound {kind} device named {name:?}; `understudy talk --list-devices` lists them")
            }),
    }
}

/// Open the microphone and speaker (`None`: the system's defaults) and
/// start them; the samples flow into the returned [`CardIo`].
pub fn open(input: Option<&str>, output: Option<&str>) -> Result<(SoundCard, CardIo)> {
    let _quiet = QuietStderr::new();
    let host = cpal::default_host();
    let mic = find("input", input, host.default_input_device(), || {
        host.input_devices().map(|d| d.collect())
    })?;
    let out = find("output", output, host.default_output_device(), || {
        host.output_devices().map(|d| d.collect())
    })?;
    let mic_name = mic.name().unwrap_or_default();
    let out_name = out.name().unwrap_or_default();
    let mic_config = mic.default_input_config().map_err(|e| {
        anyhow!(
            "cannot use the sound input {mic_name:?}: {}. {NO_SOUND}",
            clause(e)
        )
    })?;
    let out_config = out.default_output_config().map_err(|e| {
        anyhow!(
            "cannot use the sound output {out_name:?}: {}. {NO_SOUND}",
            clause(e)
        )
    })?;

    let (captured_tx, captured) = mpsc::unbounded_channel();
    let channels = mic_config.channels() as usize;
    let input_rate = mic_config.sample_rate().0;
    let input_stream = match mic_config.sample_format() {
        cpal::SampleFormat::F32 => {
            input_stream::<f32>(&mic, &mic_config.into(), channels, captured_tx)
        }
        cpal::SampleFormat::I16 => {
            input_stream::<i16>(&mic, &mic_config.into(), channels, captured_tx)
        }
        cpal::SampleFormat::U16 => {
            input_stream::<u16>(&mic, &mic_config.into(), channels, captured_tx)
        }
        other => bail!("the sound input {mic_name:?} gives {other} samples; use another device"),
    }
    .with_context(|| format!("cannot open the sound input {mic_name:?}. {NO_SOUND}"))?;

    let (speaker, played) =
        Speaker::new(out_config.sample_rate().0, out_config.channels() as usize);
    let output_stream = match out_config.sample_format() {
        cpal::SampleFormat::F32 => output_stream::<f32>(&out, &out_config.into(), speaker.clone()),
        cpal::SampleFormat::I16 => output_stream::<i16>(&out, &out_config.into(), speaker.clone()),
        cpal::SampleFormat::U16 => output_stream::<u16>(&out, &out_config.into(), speaker.clone()),
        other => bail!("the sound output {out_name:?} takes {other} samples; use another device"),
    }
    .with_context(|| format!("cannot open the sound output {out_name:?}. {NO_SOUND}"))?;
    input_stream
        .play()
        .with_context(|| format!("cannot start the sound input {mic_name:?}. {NO_SOUND}"))?;
    output_stream
        .play()
        .with_context(|| format!("cannot start the sound output {out_name:?}. {NO_SOUND}"))?;
    Ok((
        SoundCard {
            _input: input_stream,
            _output: output_stream,
            names: (mic_name, out_name),
        },
        CardIo {
            captured,
            input_rate,
            speaker,
            played,
        },
    ))
}

fn input_stream<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    channels: usize,
    tx: mpsc::UnboundedSender<Vec<i16>>,
) -> Result<cpal::Stream, cpal::BuildStreamError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    device.build_input_stream(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            let samples: Vec<f32> = data.iter().map(|s| s.to_sample::<f32>()).collect();
            let _ = tx.send(downmix(&samples, channels));
        },
        |e| tracing::warn!(error = %e, "sound input"),
        None,
    )
}

fn output_stream<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    speaker: Arc<Speaker>,
) -> Result<cpal::Stream, cpal::BuildStreamError>
where
    T: SizedSample + FromSample<f32>,
{
    device.build_output_stream(
        config,
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
            let mut buf = vec![0f32; data.len()];
            speaker.fill(&mut buf);
            for (d, s) in data.iter_mut().zip(buf) {
                *d = T::from_sample(s);
            }
        },
        |e| tracing::warn!(error = %e, "sound output"),
        None,
    )
}

/// Run one call between the sound card and the bot until the bot ends it
/// (`completed` or `transfer: <target>`) or `stop` fires (`hung up`).
/// Each finished turn goes to `on_report` as it happens.
pub async fn run_call(
    mut io: CardIo,
    admitted: Admitted,
    call_id: &str,
    stop: impl Future<Output = ()>,
    mut on_report: impl FnMut(&TurnReport),
) -> String {
    let mut session = start_call(admitted.setup.clone(), call_id.to_string());
    let mut caller = CallerAudio::new(io.input_rate);
    let mut ending: Option<String> = None;
    let mut drained = tokio::time::interval(std::time::Duration::from_millis(20));
    let mut session_over = false;
    tokio::pin!(stop);
    let result = loop {
        tokio::select! {
            captured = io.captured.recv() => match captured {
                Some(samples) => {
                    for frame in caller.push(&samples) {
                        let _ = session.events.send(CallEvent::Audio(Box::new(frame))).await;
                    }
                }
                None => break "the microphone stopped".to_string(),
            },
            Some(mark) = io.played.recv() => {
                let _ = session.events.send(CallEvent::PlayoutDone { mark }).await;
            }
            action = session.actions.recv(), if !session_over => match action {
                Some(SessionAction::Play { samples, mark }) => io.speaker.queue(&samples, mark),
                Some(SessionAction::ClearPlayout) => io.speaker.clear(),
                Some(SessionAction::Transfer { target, .. }) => ending = Some(format!("transfer: {target}")),
                Some(SessionAction::Hangup) => ending = Some("completed".into()),
                Some(SessionAction::Report(report)) => on_report(&report),
                Some(SessionAction::State(_)) => {}
                // The session is over; its last words may still be playing.
                None => {
                    session_over = true;
                    ending.get_or_insert_with(|| "completed".into());
                }
            },
            // The bot's last words have played: the call is over.
            _ = drained.tick(), if ending.is_some() => {
                if io.speaker.is_empty() {
                    break ending.take().expect("checked");
                }
            }
            _ = &mut stop => break "hung up".to_string(),
        }
    };
    let _ = session.events.send(CallEvent::Hangup).await;
    // Drain what the session still says (its last reports), then wait for it.
    while let Some(action) = session.actions.recv().await {
        if let SessionAction::Report(report) = action {
            on_report(&report);
        }
    }
    let _ = session.task.await;
    drop(admitted);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_mixes_down_to_mono() {
        assert_eq!(downmix(&[0.5, 0.5, -0.25, 0.25], 2), vec![16384, 0]);
    }

    #[test]
    fn the_speaker_plays_the_bot_then_silence_and_reports_marks() {
        let (speaker, mut played) = Speaker::new(16000, 2);
        speaker.queue(&[1000; 320], 4);
        let mut out = vec![0f32; 2 * 400];
        speaker.fill(&mut out);
        assert!(out[..640].iter().all(|v| *v > 0.0));
        assert!(out[640..].iter().all(|v| *v == 0.0));
        assert_eq!(played.try_recv(), Ok(4));
    }
}
