//! What a finished turn reports: what was heard and said, how it was
//! decided, and where the time went.

use serde::Serialize;

/// Where time went in one turn, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnTimings {
    /// End of caller speech until the endpointer was sure.
    pub endpoint: Option<f64>,
    pub stt: Option<f64>,
    pub dialog: Option<f64>,
    /// Start of speech output until the first audio was ready.
    pub tts_first_audio: Option<f64>,
    /// End of caller speech until the first bot audio left for the caller.
    pub voice_to_voice: Option<f64>,
    /// The transcription started during the pause and was kept.
    pub speculative_stt: bool,
}

/// One turn, for reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnReport {
    pub turn: u32,
    /// What the caller said (empty for no-input and DTMF).
    pub transcript: String,
    pub dtmf: Option<String>,
    pub intent: Option<String>,
    pub confidence: f32,
    pub matched_by: String,
    /// The intents a confirmation question asked about (empty: none asked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub asked: Vec<String>,
    /// What the bot said.
    pub reply: String,
    pub action: String,
    pub slots: std::collections::BTreeMap<String, String>,
    /// Caller speech in the call's audio, in ms.
    pub speech_ms: Option<(f64, f64)>,
    pub timings_ms: TurnTimings,
    /// The turn ended in the safety net (engine failure).
    pub safety_net: bool,
    /// The turn was slow and the caller heard the filler first.
    pub filler: bool,
    pub barged_in: bool,
    pub error: Option<String>,
}

impl TurnReport {
    /// Log the turn (one `info` line with every field a support engineer
    /// asks for).
    pub fn log(&self, call: &str) {
        tracing::info!(
            call = %call,
            turn = self.turn,
            transcript = %self.transcript,
            dtmf = self.dtmf.as_deref().unwrap_or(""),
            intent = self.intent.as_deref().unwrap_or(""),
            matched_by = %self.matched_by,
            reply = %self.reply,
            action = %self.action,
            voice_to_voice_ms = self.timings_ms.voice_to_voice.map(|v| v.round() as u64),
            endpoint_ms = self.timings_ms.endpoint.map(|v| v.round() as u64),
            stt_ms = self.timings_ms.stt.map(|v| v.round() as u64),
            dialog_ms = self.timings_ms.dialog.map(|v| v.round() as u64),
            tts_first_audio_ms = self.timings_ms.tts_first_audio.map(|v| v.round() as u64),
            safety_net = self.safety_net,
            filler = self.filler,
            "turn"
        );
    }
}
