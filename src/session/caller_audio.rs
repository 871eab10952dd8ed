//! The caller's audio of a call, and the cut of one utterance from it for
//! the recogniser: where the words begin and end by their level, so that the
//! same words give the same samples whatever the frame phase at which they
//! arrived (docs/ingress.md).

use crate::audio::{ms_to_samples, SAMPLE_RATE};

/// Audio kept before the words begin (Silero starts a little late, and
/// Whisper hears an utterance better with a little silence before it).
const PRE_ROLL_MS: f64 = 200.0;
/// Audio kept after the words end; with the end search below, the cut stays
/// under the pause length, so that the speculative and the final
/// transcription see the same samples.
const POST_PAD_MS: f64 = 160.0;
/// The words' first sound is looked for this far either side of Silero's
/// start...
const ONSET_SEARCH_MS: f64 = 256.0;
/// ...and then followed back over quiet gaps shorter than this (between
/// words, inside a stop consonant)...
const WORD_GAP_MS: f64 = 300.0;
/// ...but no further back than this before Silero's start.
const WALK_BACK_LIMIT_MS: f64 = 1500.0;
/// The words' last sound is looked for from this long before Silero's end...
const OFFSET_SEARCH_BEFORE_MS: f64 = 1000.0;
/// ...to this long after it (with the pad, under the 192 ms pause).
const OFFSET_SEARCH_AFTER_MS: f64 = 16.0;
/// The level window of that search: 10 ms.
const LEVEL_WINDOW: usize = (SAMPLE_RATE / 100) as usize;
/// Caller audio kept for the current turn (and, later, for takeover).
const KEEP_SECONDS: usize = 60;

/// `v` milliseconds as a sample count, for positions in the call's audio.
fn ms(v: f64) -> u64 {
    ms_to_samples(v, SAMPLE_RATE) as u64
}

/// The caller's audio of a call, addressed by absolute sample position.
pub struct CallerAudio {
    samples: Vec<i16>,
    /// Absolute position of `samples[0]`.
    base: u64,
}

impl CallerAudio {
    /// No audio yet, at position 0.
    pub fn new() -> Self {
        CallerAudio {
            samples: Vec::with_capacity(KEEP_SECONDS * SAMPLE_RATE as usize),
            base: 0,
        }
    }

    /// Add the next frame, dropping what is older than [`KEEP_SECONDS`].
    pub fn push(&mut self, frame: &[i16]) {
        self.samples.extend_from_slice(frame);
        let keep = KEEP_SECONDS * SAMPLE_RATE as usize;
        if self.samples.len() > keep + SAMPLE_RATE as usize {
            let drop = self.samples.len() - keep;
            self.samples.drain(..drop);
            self.base += drop as u64;
        }
    }

    /// The speech Silero found from `start` to `end`, cut for the
    /// recogniser: from [`PRE_ROLL_MS`] before the words begin to
    /// [`POST_PAD_MS`] after they end.
    ///
    /// Silero decides on 32 ms windows and carries state from window to
    /// window, so the same words reaching it at another phase (a SIP leg's
    /// clock, a WebSocket's first frame) can start a turn a window later, or
    /// a whole short first word later ("What time..." heard as "Time...").
    /// The cut is therefore made where the level, read at every sample,
    /// shows the words begin and end near Silero's marks: the same words
    /// give the same samples whatever their phase. Where the level cannot
    /// tell (a noisy line, loud throughout; a very quiet one, never loud),
    /// Silero's marks are used as they are.
    pub fn utterance(&self, start: u64, end: u64) -> Vec<i16> {
        let onset = self.words_begin(start).unwrap_or(start);
        let offset = self.words_end(end).unwrap_or(end);
        self.span(
            onset.saturating_sub(ms(PRE_ROLL_MS)),
            offset + ms(POST_PAD_MS),
        )
    }

    /// Where the words around Silero's `start` begin: the first loud
    /// window near it, followed back over short gaps to the quiet before
    /// the first word. `None` when nothing near is loud, or the audio is
    /// loud back to [`WALK_BACK_LIMIT_MS`].
    fn words_begin(&self, start: u64) -> Option<u64> {
        let limit = start.saturating_sub(ms(WALK_BACK_LIMIT_MS)).max(self.base);
        let mut at = self.first_loud(
            start.saturating_sub(ms(ONSET_SEARCH_MS)),
            start + ms(ONSET_SEARCH_MS),
        )?;
        loop {
            let from = at.checked_sub(ms(WORD_GAP_MS))?;
            if from < limit {
                return None;
            }
            match self.first_loud(from, at) {
                Some(earlier) => at = earlier,
                None => return Some(at),
            }
        }
    }

    /// Where the words before Silero's `end` end: after the last loud
    /// window near it. `None` when nothing near is loud, or the audio is
    /// still loud where the search stops.
    fn words_end(&self, end: u64) -> Option<u64> {
        let mut last = None;
        let mut loud_at_edge = false;
        for (i, loud) in self.loud_windows(
            end.saturating_sub(ms(OFFSET_SEARCH_BEFORE_MS)),
            end + ms(OFFSET_SEARCH_AFTER_MS),
        ) {
            if loud {
                last = Some(i + LEVEL_WINDOW as u64);
            }
            loud_at_edge = loud;
        }
        if loud_at_edge {
            return None;
        }
        last
    }

    /// The audio from `from` to `to` (absolute positions), as far as it is kept.
    pub fn span(&self, from: u64, to: u64) -> Vec<i16> {
        let from = from.max(self.base);
        let to = to.min(self.base + self.samples.len() as u64);
        if to <= from {
            return vec![];
        }
        self.samples[(from - self.base) as usize..(to - self.base) as usize].to_vec()
    }

    /// Whether each [`LEVEL_WINDOW`] starting in `from..to` (kept audio
    /// only) is at speech level, with its absolute position.
    fn loud_windows(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, bool)> + '_ {
        let kept_end = self.base + self.samples.len() as u64;
        let from = from.max(self.base);
        let to = to.min(kept_end.saturating_sub(LEVEL_WINDOW as u64));
        // Mean square at SPEECH_DBFS, times the window: integer sums, so the
        // answer cannot drift with where the sum started.
        let floor = 32768.0 * 10f64.powf(crate::audio::SPEECH_DBFS / 20.0);
        let threshold = (floor * floor * LEVEL_WINDOW as f64) as i64;
        let square = |i: u64| {
            let s = self.samples[(i - self.base) as usize] as i64;
            s * s
        };
        let mut sum: i64 = if from < to {
            (from..from + LEVEL_WINDOW as u64).map(square).sum()
        } else {
            0
        };
        (from..to).map(move |i| {
            if i > from {
                sum += square(i + LEVEL_WINDOW as u64 - 1) - square(i - 1);
            }
            (i, sum > threshold)
        })
    }

    /// The first position in `from..to` where 10 ms of speech-level audio
    /// begins.
    fn first_loud(&self, from: u64, to: u64) -> Option<u64> {
        self.loud_windows(from, to)
            .find(|&(_, loud)| loud)
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::FRAME_SAMPLES;

    /// Half a second of words: a short first word (160 ms, rising from
    /// silence in 30 ms), a 40 ms gap, then a 200 Hz voice at about -14 dBFS
    /// with a short dip and a falling tail.
    fn words() -> Vec<i16> {
        (0..8000)
            .map(|i| {
                let t = i as f64 / SAMPLE_RATE as f64;
                let envelope = (t / 0.03).min(1.0)
                    * match i {
                        2560..3200 => 0.01,
                        5000..5800 => 0.2,
                        _ => 1.0,
                    }
                    * ((0.5 - t) / 0.05).clamp(0.0, 1.0);
                (8000.0 * envelope * (2.0 * std::f64::consts::PI * 200.0 * t).sin()) as i16
            })
            .collect()
    }

    /// Faint line hiss (about -56 dBFS), the same for every call.
    fn hiss(n: usize, seed: u64) -> Vec<i16> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) % 101) as i16 - 50
            })
            .collect()
    }

    /// The words after `lead` samples of hiss, then a second of hiss, as a
    /// call's audio arrives: whole frames. Returns the audio and Silero's
    /// marks, which fall on its 512-sample grid a window after the truth;
    /// when `late`, its start misses the first word.
    fn call(lead: usize, late: bool) -> (CallerAudio, u64, u64) {
        // The line's sound before the words is the same, however long.
        let before = hiss(4 * SAMPLE_RATE as usize, 1);
        let mut signal = before[before.len() - lead..].to_vec();
        signal.extend(words());
        signal.extend(hiss(SAMPLE_RATE as usize, 2));
        let mut audio = CallerAudio::new();
        for frame in signal.chunks(FRAME_SAMPLES) {
            audio.push(frame);
        }
        let grid = |at: usize| ((at / 512 + 1) * 512) as u64;
        let start = if late { lead + 3200 } else { lead };
        (audio, grid(start), grid(lead + 8000))
    }

    #[test]
    fn the_same_words_at_any_frame_phase_are_cut_alike() {
        let base = SAMPLE_RATE as usize;
        let (audio, start, end) = call(base, false);
        let first = audio.utterance(start, end);
        for frames in 1..8 {
            // Every other phase, Silero hears the first word too late.
            let (audio, start, end) = call(base + frames * FRAME_SAMPLES, frames % 2 == 1);
            assert_eq!(
                audio.utterance(start, end),
                first,
                "{frames} frames later the recogniser would hear other samples"
            );
        }
        // Cut at the words, not at Silero's marks: 200 ms before, 160 ms
        // after (give or take the 10 ms level window).
        let expected = ms_to_samples(PRE_ROLL_MS + 500.0 + POST_PAD_MS, SAMPLE_RATE);
        assert!(
            first.len().abs_diff(expected) <= LEVEL_WINDOW,
            "the cut does not hug the words: {} samples, not {expected}",
            first.len()
        );
    }

    #[test]
    fn the_cut_ends_inside_the_pause() {
        // The speculative transcription cuts when the pause begins (192 ms
        // after `end`), the final one later: both must get the same samples.
        let (audio, start, end) = call(SAMPLE_RATE as usize, false);
        let mut at_pause = CallerAudio::new();
        at_pause.push(&audio.span(0, end + ms_to_samples(192.0, SAMPLE_RATE) as u64));
        assert_eq!(at_pause.utterance(start, end), audio.utterance(start, end));
    }

    #[test]
    fn a_line_loud_throughout_keeps_silero_marks() {
        let mut audio = CallerAudio::new();
        let loud: Vec<i16> = (0..3 * SAMPLE_RATE as usize)
            .map(|i| if i % 2 == 0 { 3000 } else { -3000 })
            .collect();
        audio.push(&loud);
        let (start, end) = (16_384, 32_768);
        assert_eq!(
            audio.utterance(start, end),
            audio.span(start - ms(PRE_ROLL_MS), end + ms(POST_PAD_MS))
        );
    }
}
