//! Turn endpointing from streaming VAD probabilities.
//!
//! Pure logic, fed one Silero probability per 32 ms chunk: decides when the
//! caller started talking (a turn or a barge-in), when a pause might be the
//! end of the turn (worth a speculative transcription), and when the turn has
//! ended. Positions are sample indexes into the call's caller audio at 16 kHz.
//!
//! Semantic end of turn: at each pause the session may ask an end-of-turn
//! model (Smart Turn v3, [`TurnVerdict`]) and then either end the turn at
//! once ([`Endpointer::end_now`]) or keep listening through a longer silence
//! ([`Endpointer::hold`], up to `max_silence_ms`). Without an answer the
//! fixed `end_silence_ms` applies, as it always did.

/// Endpointing parameters.
#[derive(Debug, Clone)]
pub struct EndpointParams {
    /// Probability at or above which a chunk is speech.
    pub threshold: f32,
    /// Below `threshold - hysteresis` a chunk is silence (between: no change).
    pub hysteresis: f32,
    /// Speech needed before a turn counts as started.
    pub min_speech_ms: u32,
    /// Silence that ends a turn.
    pub end_silence_ms: u32,
    /// Silence after which a speculative transcription may start (and the
    /// end-of-turn model is asked).
    pub pause_ms: u32,
    /// Silence that ends a turn the end-of-turn model called unfinished.
    pub max_silence_ms: u32,
    /// Samples per probability.
    pub chunk_samples: usize,
    /// Sample rate of the positions and durations, in Hz.
    pub sample_rate: u32,
}

impl Default for EndpointParams {
    fn default() -> Self {
        EndpointParams {
            threshold: 0.5,
            hysteresis: 0.15,
            min_speech_ms: 128,
            end_silence_ms: 480,
            pause_ms: 192,
            max_silence_ms: 1600,
            chunk_samples: understudy_ipc::VAD_CHUNK_SAMPLES,
            sample_rate: crate::audio::SAMPLE_RATE,
        }
    }
}

/// What the endpointer noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Enough speech: a turn (or barge-in) began at `start`.
    SpeechStarted {
        /// Where the speech began (sample position).
        start: u64,
    },
    /// Silence since `end` for `pause_ms`: the turn may be over.
    Paused {
        /// Where the turn's speech began (sample position).
        start: u64,
        /// Where the speech stopped (sample position).
        end: u64,
    },
    /// The pause turned out not to be the end.
    Resumed {
        /// Where the turn's speech began (sample position).
        start: u64,
    },
    /// The turn is over: speech ran from `start` to `end`.
    SpeechEnded {
        /// Where the turn's speech began (sample position).
        start: u64,
        /// Where the turn's speech ended (sample position).
        end: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Silence,
    /// Speech seen since `start`, not yet long enough to count.
    Onset {
        start: u64,
        voiced: u64,
    },
    /// In a turn; `silence_since` is set while the caller pauses; `held`:
    /// this pause was judged unfinished, so it may last `max_silence_ms`.
    Speech {
        start: u64,
        silence_since: Option<u64>,
        paused: bool,
        held: bool,
    },
}

/// The endpointer for one call.
#[derive(Debug, Clone)]
pub struct Endpointer {
    params: EndpointParams,
    phase: Phase,
    /// Position of the next chunk.
    pos: u64,
}

impl Endpointer {
    /// An endpointer in silence, at position 0.
    pub fn new(params: EndpointParams) -> Self {
        Endpointer {
            params,
            phase: Phase::Silence,
            pos: 0,
        }
    }

    fn ms_to_samples(&self, ms: u32) -> u64 {
        ms as u64 * self.params.sample_rate as u64 / 1000
    }

    /// True while the caller is in a turn (after `SpeechStarted`, before `SpeechEnded`).
    pub fn in_speech(&self) -> bool {
        matches!(self.phase, Phase::Speech { .. })
    }

    /// Sample position after the last chunk seen.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Forget any partial turn (after the session consumed it some other way).
    pub fn reset(&mut self) {
        self.phase = Phase::Silence;
    }

    /// The current pause is not the end of the turn: let it last up to
    /// `max_silence_ms` (until the caller speaks again). No-op outside a pause.
    pub fn hold(&mut self) {
        if let Phase::Speech {
            silence_since: Some(_),
            ref mut held,
            ..
        } = self.phase
        {
            *held = true;
        }
    }

    /// The current pause is the end of the turn: `SpeechEnded` now, as if
    /// the silence had run out. `None` outside a pause.
    pub fn end_now(&mut self) -> Option<EndpointEvent> {
        if let Phase::Speech {
            start,
            silence_since: Some(end),
            ..
        } = self.phase
        {
            self.phase = Phase::Silence;
            return Some(EndpointEvent::SpeechEnded { start, end });
        }
        None
    }

    /// Feed the probability of the next chunk.
    pub fn push(&mut self, prob: f32) -> Option<EndpointEvent> {
        let chunk_start = self.pos;
        self.pos += self.params.chunk_samples as u64;
        let chunk_end = self.pos;
        let p = &self.params;
        let voiced = prob >= p.threshold;
        let unvoiced = prob < p.threshold - p.hysteresis;
        let end_silence = self.ms_to_samples(p.end_silence_ms);
        let pause = self.ms_to_samples(p.pause_ms);
        match self.phase {
            Phase::Silence => {
                if voiced {
                    self.phase = Phase::Onset {
                        start: chunk_start,
                        voiced: p.chunk_samples as u64,
                    };
                    return self.check_onset();
                }
                None
            }
            Phase::Onset { start, voiced: n } => {
                if voiced {
                    self.phase = Phase::Onset {
                        start,
                        voiced: n + p.chunk_samples as u64,
                    };
                    self.check_onset()
                } else if unvoiced {
                    // A click or a breath, not a turn.
                    self.phase = Phase::Silence;
                    None
                } else {
                    None
                }
            }
            Phase::Speech {
                start,
                silence_since,
                paused,
                held,
            } => {
                if unvoiced {
                    let since = silence_since.unwrap_or(chunk_start);
                    let silent_for = chunk_end - since;
                    let ends_at = if held {
                        self.ms_to_samples(p.max_silence_ms)
                    } else {
                        end_silence
                    };
                    if silent_for >= ends_at {
                        self.phase = Phase::Silence;
                        return Some(EndpointEvent::SpeechEnded { start, end: since });
                    }
                    if !paused && silent_for >= pause {
                        self.phase = Phase::Speech {
                            start,
                            silence_since: Some(since),
                            paused: true,
                            held,
                        };
                        return Some(EndpointEvent::Paused { start, end: since });
                    }
                    self.phase = Phase::Speech {
                        start,
                        silence_since: Some(since),
                        paused,
                        held,
                    };
                    None
                } else if voiced {
                    self.phase = Phase::Speech {
                        start,
                        silence_since: None,
                        paused: false,
                        held: false,
                    };
                    paused.then_some(EndpointEvent::Resumed { start })
                } else {
                    None
                }
            }
        }
    }

    fn check_onset(&mut self) -> Option<EndpointEvent> {
        if let Phase::Onset { start, voiced } = self.phase {
            if voiced >= self.ms_to_samples(self.params.min_speech_ms) {
                self.phase = Phase::Speech {
                    start,
                    silence_since: None,
                    paused: false,
                    held: false,
                };
                return Some(EndpointEvent::SpeechStarted { start });
            }
        }
        None
    }
}

/// What the session makes of a pause after asking the end-of-turn model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnVerdict {
    /// The caller finished: end the turn now.
    Finished,
    /// A pause inside the turn: keep listening up to `max_silence_ms`.
    Unfinished,
    /// The model heard a finished turn, but the words so far cannot end a
    /// sentence: they end in a number (callers read numbers in groups, "my
    /// order number is 4 8 ... 2 1", and Smart Turn v3.2 takes a group's end
    /// for the turn's) or in a word like "is", "the", "my", "and". Wait as
    /// for `Unfinished`.
    WordsGoOn,
}

impl TurnVerdict {
    /// The verdict for Smart Turn's `probability` of a finished turn, given
    /// the speculative transcript of the turn so far (when there is one).
    pub fn from_model(probability: f32, threshold: f32, transcript: Option<&str>) -> Self {
        if probability < threshold {
            TurnVerdict::Unfinished
        } else if transcript.is_some_and(words_go_on) {
            TurnVerdict::WordsGoOn
        } else {
            TurnVerdict::Finished
        }
    }

    /// The label of the decisions metric.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnVerdict::Finished => "finished",
            TurnVerdict::Unfinished => "unfinished",
            TurnVerdict::WordsGoOn => "words_go_on",
        }
    }
}

/// Words after which a caller's sentence goes on: articles, possessives,
/// prepositions, conjunctions, copulas. (Waiting on a false one costs at most
/// `max_silence_ms`; ending on one cuts the caller off.)
const GOES_ON: &[&str] = &[
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "is", "are", "was",
    "were", "am", "be", "to", "of", "for", "with", "and", "or", "but", "from", "at", "by", "into",
    "about", "as", "than", "because", "if", "whats", "im", "id", "ill",
];

/// The transcript's last word is a number (digits or a number word), a
/// hesitation, or a word a sentence does not end on.
fn words_go_on(transcript: &str) -> bool {
    use crate::dialog::text::{is_filler, number_word, words};
    words(transcript).last().is_some_and(|w| {
        w.chars().all(|c| c.is_ascii_digit())
            || number_word(w).is_some()
            || is_filler(w)
            || GOES_ON.contains(&w.as_str())
    })
}

#[cfg(test)]
mod tests;
