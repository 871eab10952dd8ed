//! Asterisk's WebSocket channel driver (`chan_websocket`, Asterisk 20.16,
//! 21.11, 22.6, 23 and later): the dialplan's `Dial(WebSocket/<client>/c(ulaw))`
//! connects to `ws://<box>/asterisk-media` (docs/ingress.md).
//!
//! Media is BINARY frames in the channel's format, both ways; control is TEXT
//! frames, as single-line plain text (`MEDIA_START connection_id:... format:ulaw
//! optimal_frame_size:160 ...`, the default) or JSON (`{"event": "MEDIA_START",
//! ...}`, `control_message_format = json`). Asterisk buffers and paces what it
//! is sent: the bot's audio goes at once, followed by `MARK_MEDIA <mark>`,
//! and `MEDIA_MARK_PROCESSED <mark>` comes back when it has been played;
//! `FLUSH_MEDIA` drops what is queued (barge-in); `HANGUP` ends the call.

use super::Encoding;
use crate::audio::g711::Law;
use serde_json::{json, Value};
use std::collections::HashMap;

/// One control event from Asterisk.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `MEDIA_START`, `DTMF_END`, `MEDIA_MARK_PROCESSED`, ...
    pub name: String,
    /// Its parameters (`format`, `digit`, `correlation_id`, ...).
    pub fields: HashMap<String, String>,
    /// It came as JSON: commands go back as JSON too.
    pub json: bool,
}

impl Event {
    /// Parse one TEXT frame, in either control message format.
    pub fn parse(text: &str) -> Result<Event, String> {
        let text = text.trim();
        if text.starts_with('{') {
            let value: Value =
                serde_json::from_str(text).map_err(|e| format!("not a JSON event: {e}"))?;
            let name = value["event"]
                .as_str()
                .ok_or("a JSON event without \"event\"")?
                .to_string();
            let fields = value
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(key, value)| {
                    let value = match value {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((key.clone(), value))
                })
                .collect();
            return Ok(Event {
                name,
                fields,
                json: true,
            });
        }
        let mut words = text.split_whitespace();
        let name = words.next().ok_or("an empty control message")?.to_string();
        if !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        {
            return Err(format!("not a control event: {text:.60}"));
        }
        // `key:value` words; a bare word is the correlation id of
        // `MEDIA_MARK_PROCESSED <id>` and `MEDIA_BUFFERING_COMPLETED <id>`.
        let fields = words
            .map(|word| match word.split_once(':') {
                Some((key, value)) => (key.to_string(), value.to_string()),
                None => ("correlation_id".to_string(), word.to_string()),
            })
            .collect();
        Ok(Event {
            name,
            fields,
            json: false,
        })
    }

    /// A parameter.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

/// The channel's format from `MEDIA_START`, as the stream's encoding and rate.
pub fn format(name: &str) -> Result<(Encoding, u32), String> {
    let linear = |rate| Ok((Encoding::Linear, rate));
    match name.to_ascii_lowercase().as_str() {
        "ulaw" => Ok((Encoding::G711(Law::Mu), 8000)),
        "alaw" => Ok((Encoding::G711(Law::A), 8000)),
        "slin" => linear(8000),
        "slin12" => linear(12000),
        "slin16" => linear(16000),
        "slin24" => linear(24000),
        "slin32" => linear(32000),
        "slin44" => linear(44100),
        "slin48" => linear(48000),
        other => Err(format!(
            "format {other:?} is not supported: dial with c(ulaw), c(alaw) or c(slin16)"
        )),
    }
}

/// A command for Asterisk, in the control format its events came in.
pub fn command(json_format: bool, name: &str, correlation_id: Option<&str>) -> String {
    match (json_format, correlation_id) {
        (true, Some(id)) => json!({"command": name, "correlation_id": id}).to_string(),
        (true, None) => json!({"command": name}).to_string(),
        (false, Some(id)) => format!("{name} {id}"),
        (false, None) => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_control_formats_parse() {
        let plain = Event::parse("MEDIA_START connection_id:media1 channel:WebSocket/media1/0x5140001a0040 channel_id:1761245643.1 format:ulaw optimal_frame_size:160 ptime:20").unwrap();
        assert_eq!(plain.name, "MEDIA_START");
        assert_eq!(plain.field("format"), Some("ulaw"));
        assert_eq!(plain.field("channel_id"), Some("1761245643.1"));
        assert!(!plain.json);
        let json = Event::parse(r#"{"event":"MEDIA_START","connection_id":"media1","channel":"WebSocket/media1/0x1","channel_id":"1761245643.1","format":"slin16","optimal_frame_size":640,"ptime":20,"channel_variables":{"A":"b"}}"#).unwrap();
        assert_eq!(json.field("optimal_frame_size"), Some("640"));
        assert!(json.json);
        let mark = Event::parse("MEDIA_MARK_PROCESSED 42").unwrap();
        assert_eq!(mark.field("correlation_id"), Some("42"));
        let dtmf = Event::parse("DTMF_END digit:5 channel_id:1.1").unwrap();
        assert_eq!(dtmf.field("digit"), Some("5"));
        assert!(Event::parse("").is_err());
        assert!(Event::parse("hello there").is_err());
        assert!(Event::parse("{not json").is_err());
    }

    #[test]
    fn formats_and_commands() {
        assert_eq!(format("ulaw"), Ok((Encoding::G711(Law::Mu), 8000)));
        assert_eq!(format("slin16"), Ok((Encoding::Linear, 16000)));
        assert!(format("g722").unwrap_err().contains("c(ulaw)"));
        assert_eq!(command(false, "MARK_MEDIA", Some("7")), "MARK_MEDIA 7");
        assert_eq!(command(false, "FLUSH_MEDIA", None), "FLUSH_MEDIA");
        assert_eq!(
            command(true, "MARK_MEDIA", Some("7")),
            r#"{"command":"MARK_MEDIA","correlation_id":"7"}"#
        );
    }
}
