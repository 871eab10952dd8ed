//! Turning sampled token bytes into the text a caller sees: UTF-8 that may be
//! split across tokens, and stop strings that may be split across tokens too.

/// Decodes a stream of byte pieces into text, holding back an incomplete UTF-8
/// sequence until the next piece completes it (byte-level BPE vocabularies
/// split multi-byte characters such as "é" or emoji across tokens).
pub struct Utf8Stream {
    decoder: encoding_rs::Decoder,
}

impl Default for Utf8Stream {
    fn default() -> Self {
        Utf8Stream {
            decoder: encoding_rs::UTF_8.new_decoder_without_bom_handling(),
        }
    }
}

impl Utf8Stream {
    /// Text completed by `bytes` (possibly empty). Invalid bytes become U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.decode(bytes, false)
    }

    /// Whatever is still held back at the end of generation (as U+FFFD).
    pub fn finish(&mut self) -> String {
        self.decode(&[], true)
    }

    fn decode(&mut self, bytes: &[u8], last: bool) -> String {
        let capacity = self
            .decoder
            .max_utf8_buffer_length(bytes.len())
            .unwrap_or(bytes.len() * 3 + 16);
        let mut text = String::with_capacity(capacity);
        let (_, read, _) = self.decoder.decode_to_string(bytes, &mut text, last);
        debug_assert_eq!(read, bytes.len(), "capacity covers the worst case");
        text
    }
}

/// Accumulates generated text, ends it at the first stop string, and tells how
/// much of it can be streamed without leaking the start of a stop string.
pub struct StopScanner {
    stops: Vec<String>,
    longest_stop: usize,
    text: String,
    streamed: usize,
    stopped: bool,
}

impl StopScanner {
    pub fn new(stops: &[String]) -> Self {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let longest_stop = stops.iter().map(String::len).max().unwrap_or(0);
        StopScanner {
            stops,
            longest_stop,
            text: String::new(),
            streamed: 0,
            stopped: false,
        }
    }

    /// Append generated text; returns true when a stop string was reached (the
    /// text is then cut just before it and nothing more should be generated).
    pub fn push(&mut self, piece: &str) -> bool {
        if self.stopped || piece.is_empty() {
            return self.stopped;
        }
        // A stop string can only end inside the new piece: search from where it
        // could have started.
        let mut from = self
            .text
            .len()
            .saturating_sub(self.longest_stop.saturating_sub(1));
        self.text.push_str(piece);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let first_hit = self
            .stops
            .iter()
            .filter_map(|stop| self.text[from..].find(stop.as_str()).map(|at| from + at))
            .min();
        if let Some(at) = first_hit {
            self.text.truncate(at);
            self.streamed = self.streamed.min(at);
            self.stopped = true;
        }
        self.stopped
    }

    /// The next piece that is safe to stream: everything except a tail that
    /// could still grow into a stop string. Empty when there is nothing new.
    pub fn take_streamable(&mut self) -> &str {
        let end = if self.stopped {
            self.text.len()
        } else {
            self.text.len() - self.held_back()
        };
        let start = self.streamed;
        self.streamed = end.max(start);
        &self.text[start..self.streamed]
    }

    /// Everything not streamed yet (call once generation is over).
    pub fn take_rest(&mut self) -> &str {
        let start = self.streamed;
        self.streamed = self.text.len();
        &self.text[start..]
    }

    #[cfg(test)]
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }

    /// Length of the longest suffix of the text that is a proper prefix of a
    /// stop string.
    fn held_back(&self) -> usize {
        let mut held = 0;
        for stop in &self.stops {
            for len in (1..stop.len()).rev() {
                if len <= held {
                    break;
                }
                if stop.is_char_boundary(len) && self.text.ends_with(&stop[..len]) {
                    held = len;
                    break;
                }
            }
        }
        held
    }
}

/// Length of the common prefix of two token sequences.
pub fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_pieces_is_held_back_then_completed() {
        let bytes = "né 👋".as_bytes();
        let mut stream = Utf8Stream::default();
        let mut out = String::new();
        for b in bytes {
            out.push_str(&stream.push(std::slice::from_ref(b)));
        }
        out.push_str(&stream.finish());
        assert_eq!(out, "né 👋");

        let mut stream = Utf8Stream::default();
        assert_eq!(stream.push(&[0xF0, 0x9F]), "");
        assert_eq!(stream.finish(), "\u{FFFD}");
    }

    #[test]
    fn stop_string_split_across_pieces_cuts_the_text_and_is_never_streamed() {
        let mut scan = StopScanner::new(&["\nUser:".to_string()]);
        let mut streamed = String::new();
        for piece in ["Hello", " there", "\nUs", "er", ": more"] {
            let stop = scan.push(piece);
            streamed.push_str(scan.take_streamable());
            if stop {
                break;
            }
        }
        streamed.push_str(scan.take_rest());
        assert_eq!(scan.text(), "Hello there");
        assert_eq!(streamed, "Hello there");
    }

    #[test]
    fn text_that_only_looks_like_a_stop_prefix_is_released() {
        let mut scan = StopScanner::new(&["END".to_string()]);
        assert!(!scan.push("the E"));
        assert_eq!(scan.take_streamable(), "the ");
        assert!(!scan.push("nd"));
        assert_eq!(scan.take_streamable(), "End");
        assert_eq!(scan.take_rest(), "");
    }

    #[test]
    fn earliest_of_several_stops_wins_and_multibyte_text_is_safe() {
        let mut scan = StopScanner::new(&["é!".to_string(), "x".to_string()]);
        assert!(!scan.push("aaé"));
        assert_eq!(scan.take_streamable(), "aa");
        assert!(scan.push("! x"));
        assert_eq!(scan.text(), "aa");
        assert_eq!(scan.take_rest(), "");
    }

    #[test]
    fn no_stops_streams_everything() {
        let mut scan = StopScanner::new(&[]);
        assert!(!scan.push("abc"));
        assert_eq!(scan.take_streamable(), "abc");
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
    }
}
