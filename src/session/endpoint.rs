//! Turn endpointing from streaming VAD probabilities.
//!
//! Pure logic, fed one Silero probability per 32 ms chunk: decides when the
//! caller started talking (a turn or a barge-in), when a pause might be the
//! end of the turn (worth a speculative transcription), and when the turn has
//! ended. Positions are sample indexes into the call's caller audio at 16 kHz.

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
    /// Silence after which a speculative transcription may start.
    pub pause_ms: u32,
    /// Samples per probability.
    pub chunk_samples: usize,
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
            chunk_samples: understudy_ipc::VAD_CHUNK_SAMPLES,
            sample_rate: crate::audio::SAMPLE_RATE,
        }
    }
}

/// What the endpointer noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Enough speech: a turn (or barge-in) began at `start`.
    SpeechStarted { start: u64 },
    /// Silence since `end` for `pause_ms`: the turn may be over.
    Paused { start: u64, end: u64 },
    /// The pause turned out not to be the end.
    Resumed { start: u64 },
    /// The turn is over: speech ran from `start` to `end`.
    SpeechEnded { start: u64, end: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Silence,
    /// Speech seen since `start`, not yet long enough to count.
    Onset {
        start: u64,
        voiced: u64,
    },
    /// In a turn; `silence_since` is set while the caller pauses.
    Speech {
        start: u64,
        silence_since: Option<u64>,
        paused: bool,
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
            } => {
                if unvoiced {
                    let since = silence_since.unwrap_or(chunk_start);
                    let silent_for = chunk_end - since;
                    if silent_for >= end_silence {
                        self.phase = Phase::Silence;
                        return Some(EndpointEvent::SpeechEnded { start, end: since });
                    }
                    if !paused && silent_for >= pause {
                        self.phase = Phase::Speech {
                            start,
                            silence_since: Some(since),
                            paused: true,
                        };
                        return Some(EndpointEvent::Paused { start, end: since });
                    }
                    self.phase = Phase::Speech {
                        start,
                        silence_since: Some(since),
                        paused,
                    };
                    None
                } else if voiced {
                    self.phase = Phase::Speech {
                        start,
                        silence_since: None,
                        paused: false,
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
                };
                return Some(EndpointEvent::SpeechStarted { start });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probabilities for a pattern like "....SSSSSSS......", one char per chunk.
    fn run(pattern: &str, params: EndpointParams) -> Vec<(usize, EndpointEvent)> {
        let mut ep = Endpointer::new(params);
        pattern
            .chars()
            .enumerate()
            .filter_map(|(i, c)| {
                let p = match c {
                    'S' => 0.9,
                    '~' => 0.42, // in the hysteresis band
                    _ => 0.05,
                };
                ep.push(p).map(|e| (i, e))
            })
            .collect()
    }

    fn params() -> EndpointParams {
        // 512-sample chunks are 32 ms: min speech 4 chunks, pause 6, end 15.
        EndpointParams {
            min_speech_ms: 128,
            pause_ms: 192,
            end_silence_ms: 480,
            ..Default::default()
        }
    }

    #[test]
    fn a_turn_starts_pauses_and_ends() {
        let events = run("..SSSSSSSS................", params());
        assert_eq!(
            events[0],
            (5, EndpointEvent::SpeechStarted { start: 2 * 512 })
        );
        assert_eq!(
            events[1],
            (
                15,
                EndpointEvent::Paused {
                    start: 1024,
                    end: 10 * 512
                }
            )
        );
        assert_eq!(
            events[2],
            (
                24,
                EndpointEvent::SpeechEnded {
                    start: 1024,
                    end: 10 * 512
                }
            )
        );
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn short_blips_are_not_turns() {
        assert!(run("..SS....S.....SSS.......", params()).is_empty());
    }

    #[test]
    fn a_pause_that_resumes_keeps_one_turn() {
        let events = run("SSSSSS.......SSSS..................", params());
        let kinds: Vec<_> = events.iter().map(|(_, e)| *e).collect();
        assert!(matches!(
            kinds[0],
            EndpointEvent::SpeechStarted { start: 0 }
        ));
        assert!(matches!(kinds[1], EndpointEvent::Paused { .. }));
        assert!(matches!(kinds[2], EndpointEvent::Resumed { start: 0 }));
        // The second pause is a new chance to transcribe early.
        assert_eq!(
            kinds[3],
            EndpointEvent::Paused {
                start: 0,
                end: 17 * 512
            }
        );
        assert_eq!(
            kinds[4],
            EndpointEvent::SpeechEnded {
                start: 0,
                end: 17 * 512
            }
        );
        assert_eq!(kinds.len(), 5);
    }

    #[test]
    fn the_hysteresis_band_neither_starts_nor_ends() {
        // Uncertain chunks inside speech do not count as silence.
        let events = run("SSSSS~~~~~~~~~~~~~~~~~~~~SS", params());
        assert_eq!(events.len(), 1, "{events:?}");
    }
}
