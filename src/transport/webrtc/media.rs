//! The audio of a WebRTC call: which codec the offer lets us use, and the
//! codec itself both ways (Opus at 48 kHz from libopus, or G.711 mu-law).

use crate::audio::g711::Law;
use crate::transport::sip::sdp;

/// The codecs a WebRTC call can use, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Opus, 48 kHz: what every browser offers first; wideband speech.
    Opus,
    /// G.711 mu-law, 8 kHz: what every WebRTC endpoint has.
    Pcmu,
}

impl Codec {
    /// The RTP clock and the rate the audio is coded at.
    pub fn rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Pcmu => 8_000,
        }
    }

    /// `opus` or `pcmu`, for logs and the softphone.
    pub fn label(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "pcmu",
        }
    }

    /// The codec as the WebRTC stack registers it.
    pub fn rtp_codec(self) -> rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
        use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_PCMU};
        let (mime_type, clock_rate, channels, fmtp) = match self {
            // RFC 7587: Opus is always signalled as 2 channels; we send mono.
            Codec::Opus => (MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1"),
            Codec::Pcmu => (MIME_TYPE_PCMU, 8_000, 1, ""),
        };
        rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
            mime_type: mime_type.to_string(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_string(),
            rtcp_feedback: vec![],
        }
    }
}

/// The codec chosen from an offer, with the offer's payload type for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    /// The codec.
    pub codec: Codec,
    /// Its RTP payload type in the offer (and so in our answer).
    pub payload_type: u8,
}

/// Read a WebRTC offer and choose its audio codec: Opus if offered, else
/// PCMU. The error says, in a line, what the offer lacks.
pub fn choose(offer: &str) -> Result<Chosen, String> {
    let description =
        sdp::parse(offer.as_bytes()).map_err(|e| format!("the offer is not SDP: {e}"))?;
    let mut offered = vec![];
    let mut pcmu = None;
    for md in &description.media_descriptions {
        if md.media_name.media != "audio" {
            continue;
        }
        for format in &md.media_name.formats {
            let Some(pt) = format.parse::<u8>().ok().filter(|pt| *pt < 128) else {
                continue;
            };
            let Some((name, rate)) = sdp::format_codec(md, pt) else {
                continue;
            };
            match (name.as_str(), rate) {
                ("opus", 48_000) => {
                    return Ok(Chosen {
                        codec: Codec::Opus,
                        payload_type: pt,
                    })
                }
                ("pcmu", 8_000) if pcmu.is_none() => pcmu = Some(pt),
                _ => {}
            }
            offered.push(format!("{name}/{rate}"));
        }
        if let Some(payload_type) = pcmu {
            return Ok(Chosen {
                codec: Codec::Pcmu,
                payload_type,
            });
        }
    }
    if offered.is_empty() {
        Err("the offer has no audio: add a microphone track (or a recvonly audio transceiver) before creating the offer".into())
    } else {
        Err(format!(
            "the offer's audio codecs ({}) include neither Opus nor PCMU",
            offered.join(", ")
        ))
    }
}

/// Turns the caller's RTP payloads into samples at the codec's rate.
pub enum Decoder {
    /// libopus, mono output.
    Opus(Box<opus::Decoder>),
    /// G.711 mu-law.
    Pcmu,
}

/// The longest Opus packet: 120 ms at 48 kHz.
const OPUS_MAX_SAMPLES: usize = 5760;

impl Decoder {
    /// A decoder for `codec`.
    pub fn new(codec: Codec) -> Result<Decoder, String> {
        Ok(match codec {
            Codec::Opus => Decoder::Opus(Box::new(
                opus::Decoder::new(48_000, opus::Channels::Mono)
                    .map_err(|e| format!("Opus decoder: {e}"))?,
            )),
            Codec::Pcmu => Decoder::Pcmu,
        })
    }

    /// One packet's audio.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>, String> {
        match self {
            Decoder::Opus(decoder) => {
                let mut out = vec![0i16; OPUS_MAX_SAMPLES];
                let n = decoder
                    .decode(payload, &mut out, false)
                    .map_err(|e| format!("a corrupt Opus packet: {e}"))?;
                out.truncate(n);
                Ok(out)
            }
            Decoder::Pcmu => Ok(Law::Mu.decode(payload)),
        }
    }

    /// Stand-in audio for one lost 20 ms packet: Opus's own concealment,
    /// silence for G.711.
    pub fn conceal(&mut self) -> Vec<i16> {
        match self {
            Decoder::Opus(decoder) => {
                let mut out = vec![0i16; 960];
                match decoder.decode(&[], &mut out, false) {
                    Ok(n) => {
                        out.truncate(n);
                        out
                    }
                    Err(_) => vec![0; 960],
                }
            }
            Decoder::Pcmu => vec![0; 160],
        }
    }
}

/// Turns the bot's 20 ms frames (at the codec's rate) into RTP payloads.
pub enum Encoder {
    /// libopus, mono, tuned for voice.
    Opus(Box<opus::Encoder>),
    /// G.711 mu-law.
    Pcmu,
}

impl Encoder {
    /// An encoder for `codec`.
    pub fn new(codec: Codec) -> Result<Encoder, String> {
        Ok(match codec {
            Codec::Opus => Encoder::Opus(Box::new(
                opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
                    .map_err(|e| format!("Opus encoder: {e}"))?,
            )),
            Codec::Pcmu => Encoder::Pcmu,
        })
    }

    /// One 20 ms frame (a shorter last piece is padded with silence).
    pub fn encode(&mut self, frame: &[i16]) -> Vec<u8> {
        match self {
            Encoder::Opus(encoder) => {
                let mut pcm = frame.to_vec();
                pcm.resize(960, 0);
                encoder.encode_vec(&pcm, 1500).unwrap_or_default()
            }
            Encoder::Pcmu => Law::Mu.encode(frame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audio part of an offer as Chromium writes it.
    const CHROMIUM_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n";

    #[test]
    fn a_browser_offer_gets_opus() {
        assert_eq!(
            choose(CHROMIUM_OFFER),
            Ok(Chosen {
                codec: Codec::Opus,
                payload_type: 111
            })
        );
    }

    #[test]
    fn pcmu_when_opus_is_not_offered() {
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8 0\r\nc=IN IP4 0.0.0.0\r\n";
        assert_eq!(
            choose(offer),
            Ok(Chosen {
                codec: Codec::Pcmu,
                payload_type: 0
            })
        );
    }

    #[test]
    fn an_offer_without_usable_audio_says_what_it_lacks() {
        let pcma = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8\r\nc=IN IP4 0.0.0.0\r\n";
        let err = choose(pcma).unwrap_err();
        assert!(
            err.contains("pcma/8000") && err.contains("neither Opus nor PCMU"),
            "{err}"
        );
        let video = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n";
        assert!(choose(video).unwrap_err().contains("no audio"));
        assert!(choose("hello").unwrap_err().contains("not SDP"));
    }

    #[test]
    fn opus_round_trips_speech_shaped_audio() {
        let mut encoder = Encoder::new(Codec::Opus).unwrap();
        let mut decoder = Decoder::new(Codec::Opus).unwrap();
        let tone: Vec<i16> = (0..960 * 10)
            .map(|i| {
                ((i as f32 * 2.0 * std::f32::consts::PI * 300.0 / 48_000.0).sin() * 8000.0) as i16
            })
            .collect();
        let mut energy = 0f64;
        for frame in tone.chunks(960) {
            let packet = encoder.encode(frame);
            assert!(!packet.is_empty() && packet.len() < 400);
            let audio = decoder.decode(&packet).unwrap();
            assert_eq!(audio.len(), 960);
            energy += audio.iter().map(|s| (*s as f64).powi(2)).sum::<f64>();
        }
        assert!(energy / tone.len() as f64 > 1e6, "the tone came through");
        assert_eq!(decoder.conceal().len(), 960);
    }
}
