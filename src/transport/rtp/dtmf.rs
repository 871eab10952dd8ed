//! DTMF keys, both ways callers' equipment sends them: RFC 4733 telephone
//! events in the RTP stream, and SIP INFO bodies (`application/dtmf-relay`,
//! `application/dtmf`). No crate does RFC 4733; it is a 4-byte payload.

/// One RFC 4733 event payload (section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event code: 0-9 are digits, 10 is `*`, 11 is `#`, 12-15 are A-D.
    pub event: u8,
    /// The E bit: the event has ended (sent three times).
    pub end: bool,
    /// Power level in -dBm0 (0-63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parse an event payload; extra bytes (redundant events) are ignored.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let b: [u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The 4-byte wire form of the event.
    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

/// The key of a DTMF event code (RFC 4733 section 3.2): 0-9, *, #, A-D.
pub fn key_of_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// The event code of a key (`a`-`d` accepted as `A`-`D`).
pub fn event_of_key(key: char) -> Option<u8> {
    match key.to_ascii_uppercase() {
        k @ '0'..='9' => Some(k as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        k @ 'A'..='D' => Some(k as u8 - b'A' + 12),
        _ => None,
    }
}

/// Turns a stream of RFC 4733 packets into key presses, once each.
///
/// One key press is many packets that share the event's start timestamp
/// (updates every 50 ms or so, then three end packets); the key is reported
/// on the first packet seen for a new timestamp, so a lost first packet or
/// lost end packets still give exactly one key.
#[derive(Debug, Default)]
pub struct EventDetector {
    last: Option<(u32, u8)>,
}

impl EventDetector {
    /// Feed one `telephone-event` payload with its RTP timestamp; the key on the first packet of a
    /// new press.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let event = TelephoneEvent::parse(payload)?;
        let key = key_of_event(event.event)?;
        if self.last == Some((timestamp, event.event)) {
            return None;
        }
        self.last = Some((timestamp, event.event));
        Some(key)
    }
}

/// A key from a SIP INFO body, by its Content-Type:
/// `application/dtmf-relay` (`Signal=5\r\nDuration=160`) or
/// `application/dtmf` (the key alone).
pub fn key_from_info(content_type: &str, body: &[u8]) -> Option<char> {
    let ctype = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok()?;
    let signal = match ctype.as_str() {
        "application/dtmf-relay" => text.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?,
        "application/dtmf" => text.trim(),
        _ => return None,
    };
    // Some senders put the event number ("10" for '*') instead of the key.
    match signal.parse::<u8>() {
        Ok(n) if n >= 10 => key_of_event(n),
        _ => {
            let mut chars = signal.chars();
            let key = chars.next()?;
            if chars.next().is_some() {
                return None;
            }
            event_of_key(key).and_then(key_of_event)
        }
    }
}

/// The packets that send one key as RFC 4733 events, 20 ms apart: start
/// (marker), updates, then the end packet three times (section 2.5.1.4).
/// Each payload is sent with the same timestamp, the event's start.
pub fn key_packets(key: char, duration_ms: u32) -> Option<Vec<[u8; 4]>> {
    let event = event_of_key(key)?;
    let steps = (duration_ms / 20).max(2);
    let mut out = Vec::new();
    for step in 1..=steps {
        let duration = (step * 160).min(u16::MAX as u32) as u16;
        let end = step == steps;
        let payload = TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .to_bytes();
        out.push(payload);
        if end {
            out.push(payload);
            out.push(payload);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_payload_round_trips() {
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(e.to_bytes(), [11, 0x8a, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Some(e));
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn keys_and_codes() {
        let keys = "0123456789*#ABCD";
        for (code, key) in keys.chars().enumerate() {
            assert_eq!(key_of_event(code as u8), Some(key));
            assert_eq!(event_of_key(key), Some(code as u8));
        }
        assert_eq!(key_of_event(16), None, "flash hook is not a key");
        assert_eq!(event_of_key('x'), None);
    }

    #[test]
    fn one_key_per_event_despite_repeats_and_losses() {
        let mut d = EventDetector::default();
        let five = key_packets('5', 100).unwrap();
        let mut keys = String::new();
        for p in &five {
            keys.extend(d.on_packet(1000, p));
        }
        // The same key again, first packets lost: still reported once.
        for p in &five[2..] {
            keys.extend(d.on_packet(3000, p));
        }
        // A different key at its own timestamp.
        for p in key_packets('#', 60).unwrap() {
            keys.extend(d.on_packet(5000, &p));
        }
        assert_eq!(keys, "55#");
    }

    #[test]
    fn key_packets_end_three_times() {
        let p = key_packets('9', 100).unwrap();
        assert_eq!(p.len(), 5 + 2);
        let ends = p
            .iter()
            .filter(|b| TelephoneEvent::parse(&b[..]).unwrap().end)
            .count();
        assert_eq!(ends, 3);
        assert_eq!(TelephoneEvent::parse(&p[6]).unwrap().duration, 800);
    }

    #[test]
    fn info_bodies() {
        assert_eq!(
            key_from_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            key_from_info(
                "Application/DTMF-Relay; charset=x",
                b"signal = #\nDuration=100"
            ),
            Some('#')
        );
        assert_eq!(
            key_from_info("application/dtmf-relay", b"Signal=11\r\n"),
            Some('#')
        );
        assert_eq!(key_from_info("application/dtmf", b"7\r\n"), Some('7'));
        assert_eq!(key_from_info("application/dtmf", b"d"), Some('D'));
        assert_eq!(key_from_info("application/dtmf", b"77"), None);
        assert_eq!(key_from_info("text/plain", b"Signal=5"), None);
        assert_eq!(
            key_from_info("application/dtmf-relay", b"Duration=160"),
            None
        );
        assert_eq!(key_from_info("application/dtmf-relay", &[0xff, 0xfe]), None);
    }
}
