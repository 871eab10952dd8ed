//! SDP offer/answer (RFC 3264) for one audio stream: G.711 (PCMU, PCMA) at
//! 8 kHz and `telephone-event` (RFC 4733).
//!
//! Parsing uses `rtc-sdp` (it survived 200k mutated inputs without a panic);
//! it does not know the static payload types 0 and 8 without an `rtpmap`
//! line, so those are mapped here. Our own SDP is written by hand: it is a
//! dozen fixed lines.

use crate::audio::g711::Law;
pub use crate::transport::rtp::{Direction, MediaParams};
use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

/// Why an SDP body cannot be used; each maps to a SIP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Not SDP at all, or not well-formed: 400 Bad Request.
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// Well-formed, but nothing we can do (no G.711, SRTP, a host name...): 488.
    #[error("no acceptable media: {0}")]
    NotAcceptable(String),
}

impl SdpError {
    /// The SIP status to reject an offer with.
    pub fn status(&self) -> u16 {
        match self {
            SdpError::Malformed(_) => 400,
            SdpError::NotAcceptable(_) => 488,
        }
    }
}

/// The accepted audio stream of an offer, and how to answer the rest.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// The stream's parameters as agreed.
    pub params: MediaParams,
    /// Index of the chosen `m=` line among the offer's.
    chosen: usize,
    /// Each offered `m=` line's media, protocol and formats, to reject the
    /// others with port 0 (an answer has as many `m=` lines as the offer).
    offered: Vec<(String, String, Vec<String>)>,
}

/// Our side of the stream: where we receive RTP.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// The address written in `c=` (reachable by the peer).
    pub address: IpAddr,
    /// Our RTP port, written in `m=`.
    pub rtp_port: u16,
    /// `o=` session id, fixed for the call.
    pub session_id: u64,
    /// `o=` version; increment when our SDP changes.
    pub version: u64,
    /// Codecs we accept, most preferred first.
    pub codecs: Vec<Law>,
}

/// The payload type we use for `telephone-event` in our own offers.
pub const OFFER_DTMF_PT: u8 = 101;

fn static_pt(law: Law) -> u8 {
    match law {
        Law::Mu => 0,
        Law::A => 8,
    }
}

fn law_name(law: Law) -> &'static str {
    match law {
        Law::Mu => "PCMU",
        Law::A => "PCMA",
    }
}

/// Parse an SDP body (any line ending) without interpreting it.
pub fn parse(body: &[u8]) -> Result<rtc_sdp::SessionDescription, SdpError> {
    if body.is_empty() {
        return Err(SdpError::Malformed("empty body".into()));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| SdpError::Malformed("not UTF-8 text".into()))?;
    // rtc-sdp wants CRLF or LF; a trailing line without a newline is common.
    let mut text = text.replace("\r\n", "\n");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut reader = Cursor::new(text.as_bytes());
    rtc_sdp::SessionDescription::unmarshal(&mut reader)
        .map_err(|e| SdpError::Malformed(e.to_string()))
}

fn direction_of(attrs: &[rtc_sdp::description::common::Attribute]) -> Option<Direction> {
    attrs.iter().rev().find_map(|a| match a.key.as_str() {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    })
}

fn connection_ip(
    info: Option<&rtc_sdp::description::common::ConnectionInformation>,
) -> Result<Option<IpAddr>, SdpError> {
    let Some(info) = info else { return Ok(None) };
    let Some(address) = &info.address else {
        return Ok(None);
    };
    // "c=IN IP4 224.2.1.1/127" carries a TTL; unicast addresses have none.
    let host = address.address.split('/').next().unwrap_or_default();
    host.parse::<IpAddr>().map(Some).map_err(|_| {
        SdpError::NotAcceptable(format!(
            "connection address {host:?} is not an IP address (host names are not resolved)"
        ))
    })
}

/// A codec named by an `m=` format: the rtpmap if present, else the static table.
pub(crate) fn format_codec(md: &rtc_sdp::MediaDescription, pt: u8) -> Option<(String, u32)> {
    let attr = md.attributes.iter().find_map(|a| {
        let value = a.value.as_deref()?;
        if a.key != "rtpmap" {
            return None;
        }
        let (num, rest) = value.split_once(' ')?;
        (num.trim().parse::<u8>().ok()? == pt).then(|| rest.trim().to_string())
    });
    match attr {
        Some(rest) => {
            let mut parts = rest.split('/');
            let name = parts.next()?.trim().to_ascii_lowercase();
            let rate = parts.next()?.trim().parse().ok()?;
            Some((name, rate))
        }
        None => match pt {
            0 => Some(("pcmu".into(), 8000)),
            8 => Some(("pcma".into(), 8000)),
            _ => None,
        },
    }
}

/// Pick the audio stream from a session description: the first `m=audio` line
/// with a port, `RTP/AVP`, and a G.711 codec in `accept`.
fn choose(sdp: &rtc_sdp::SessionDescription, accept: &[Law]) -> Result<Negotiated, SdpError> {
    let session_ip = connection_ip(sdp.connection_information.as_ref())?;
    let session_direction = direction_of(&sdp.attributes);
    let offered: Vec<(String, String, Vec<String>)> = sdp
        .media_descriptions
        .iter()
        .map(|md| {
            (
                md.media_name.media.clone(),
                md.media_name.protos.join("/"),
                md.media_name.formats.clone(),
            )
        })
        .collect();
    let mut reasons = Vec::new();
    for (index, md) in sdp.media_descriptions.iter().enumerate() {
        let name = &md.media_name;
        if name.media != "audio" {
            continue;
        }
        let proto = name.protos.join("/");
        if !proto.eq_ignore_ascii_case("RTP/AVP") {
            reasons.push(format!("audio over {proto} (only RTP/AVP; no SRTP)"));
            continue;
        }
        if name.port.value <= 0 || name.port.value > u16::MAX as isize {
            continue;
        }
        let mut chosen = None;
        let mut dtmf = None;
        for format in &name.formats {
            let Ok(pt) = format.parse::<u8>() else {
                continue;
            };
            if pt > 127 {
                continue;
            }
            let Some((codec, rate)) = format_codec(md, pt) else {
                continue;
            };
            match (codec.as_str(), rate) {
                ("pcmu", 8000) if chosen.is_none() && accept.contains(&Law::Mu) => {
                    chosen = Some((Law::Mu, pt))
                }
                ("pcma", 8000) if chosen.is_none() && accept.contains(&Law::A) => {
                    chosen = Some((Law::A, pt))
                }
                ("telephone-event", 8000) if dtmf.is_none() => dtmf = Some(pt),
                _ => {}
            }
        }
        let Some((law, payload_type)) = chosen else {
            reasons.push(format!(
                "audio formats {:?} without PCMU/PCMA at 8 kHz",
                name.formats
            ));
            continue;
        };
        let ip = match connection_ip(md.connection_information.as_ref())? {
            Some(ip) => Some(ip),
            None => session_ip,
        };
        let Some(ip) = ip else {
            return Err(SdpError::Malformed(
                "no connection address (c=) for the audio stream".into(),
            ));
        };
        let remote = (!ip.is_unspecified()).then(|| SocketAddr::new(ip, name.port.value as u16));
        let remote_direction = direction_of(&md.attributes)
            .or(session_direction)
            .unwrap_or(Direction::SendRecv);
        let ptime_ms = md
            .attributes
            .iter()
            .find(|a| a.key == "ptime")
            .and_then(|a| a.value.as_deref()?.trim().parse().ok());
        return Ok(Negotiated {
            params: MediaParams {
                remote,
                law,
                payload_type,
                dtmf_payload_type: dtmf,
                remote_direction,
                ptime_ms,
            },
            chosen: index,
            offered,
        });
    }
    if reasons.is_empty() {
        reasons.push("no audio stream".into());
    }
    Err(SdpError::NotAcceptable(reasons.join("; ")))
}

/// Read an offer and settle the stream we will answer with.
pub fn negotiate_offer(body: &[u8], accept: &[Law]) -> Result<Negotiated, SdpError> {
    choose(&parse(body)?, accept)
}

/// Read the answer to one of our offers ([`offer`]).
pub fn read_answer(body: &[u8], accept: &[Law]) -> Result<MediaParams, SdpError> {
    choose(&parse(body)?, accept).map(|n| n.params)
}

fn write_session_header(out: &mut String, local: &LocalMedia) {
    let ip_kind = if local.address.is_ipv6() {
        "IP6"
    } else {
        "IP4"
    };
    let _ = write!(
        out,
        "v=0\r\no=understudy {} {} IN {ip_kind} {}\r\ns=understudy\r\nc=IN {ip_kind} {}\r\nt=0 0\r\n",
        local.session_id, local.version, local.address, local.address
    );
}

fn write_audio(
    out: &mut String,
    port: u16,
    codecs: &[(Law, u8)],
    dtmf: Option<u8>,
    direction: Direction,
) {
    let mut formats: Vec<String> = codecs.iter().map(|(_, pt)| pt.to_string()).collect();
    if let Some(pt) = dtmf {
        formats.push(pt.to_string());
    }
    let _ = write!(out, "m=audio {port} RTP/AVP {}\r\n", formats.join(" "));
    for (law, pt) in codecs {
        let _ = write!(out, "a=rtpmap:{pt} {}/8000\r\n", law_name(*law));
    }
    if let Some(pt) = dtmf {
        let _ = write!(
            out,
            "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-15\r\n"
        );
    }
    let _ = write!(out, "a=ptime:20\r\na={}\r\n", direction.attribute());
}

/// Our answer to a negotiated offer: the chosen stream with the reversed
/// direction, every other offered stream rejected.
pub fn answer(local: &LocalMedia, negotiated: &Negotiated) -> String {
    let p = &negotiated.params;
    let mut out = String::new();
    write_session_header(&mut out, local);
    for (index, (media, proto, formats)) in negotiated.offered.iter().enumerate() {
        if index == negotiated.chosen {
            write_audio(
                &mut out,
                local.rtp_port,
                &[(p.law, p.payload_type)],
                p.dtmf_payload_type,
                p.local_direction(),
            );
        } else {
            // Rejected streams keep their line with port 0 (RFC 3264 section 6).
            let formats = if formats.is_empty() {
                "0".to_string()
            } else {
                formats.join(" ")
            };
            let _ = write!(out, "m={media} 0 {proto} {formats}\r\n");
        }
    }
    out
}

/// Our offer (for calls we place, and for re-INVITEs that carry no offer).
pub fn offer(local: &LocalMedia, direction: Direction) -> String {
    let codecs: Vec<(Law, u8)> = local
        .codecs
        .iter()
        .map(|&law| (law, static_pt(law)))
        .collect();
    let mut out = String::new();
    write_session_header(&mut out, local);
    write_audio(
        &mut out,
        local.rtp_port,
        &codecs,
        Some(OFFER_DTMF_PT),
        direction,
    );
    out
}

/// Our side of a dialog's offer/answer exchanges. The `o=` version moves
/// only when our SDP changes (RFC 3264 section 8), and the settled stream is
/// kept for the media leg.
#[derive(Debug, Clone)]
pub struct SdpSession {
    /// Our address and port, the fixed part of every SDP we write.
    pub local: LocalMedia,
    /// The stream as last settled (`None` before any exchange finished).
    pub params: Option<MediaParams>,
    last: Option<String>,
}

impl SdpSession {
    /// A session that has not exchanged any SDP yet.
    pub fn new(local: LocalMedia) -> Self {
        SdpSession {
            local,
            params: None,
            last: None,
        }
    }

    fn stamp(&mut self, make: impl Fn(&LocalMedia) -> String) -> String {
        let mut body = make(&self.local);
        if self.last.as_ref().is_some_and(|last| *last != body) {
            self.local.version += 1;
            body = make(&self.local);
        }
        self.last = Some(body.clone());
        body
    }

    /// Answer an offer already negotiated.
    pub fn answer_negotiated(&mut self, negotiated: &Negotiated) -> String {
        self.params = Some(negotiated.params.clone());
        self.stamp(|local| answer(local, negotiated))
    }

    /// Answer an offer body.
    pub fn answer(&mut self, offer_body: &[u8]) -> Result<(String, MediaParams), SdpError> {
        let negotiated = negotiate_offer(offer_body, &self.local.codecs)?;
        Ok((self.answer_negotiated(&negotiated), negotiated.params))
    }

    /// Make an offer (the answer comes back through [`SdpSession::accept_answer`]).
    pub fn offer(&mut self, direction: Direction) -> String {
        self.stamp(|local| offer(local, direction))
    }

    /// Take the answer to our offer.
    pub fn accept_answer(&mut self, body: &[u8]) -> Result<MediaParams, SdpError> {
        let params = read_answer(body, &self.local.codecs)?;
        self.params = Some(params.clone());
        Ok(params)
    }
}

/// Parse a codec name from the configuration (`PCMU`, `PCMA`).
pub fn law_from_name(name: &str) -> Option<Law> {
    match name.to_ascii_uppercase().as_str() {
        "PCMU" | "ULAW" | "MULAW" | "G711U" => Some(Law::Mu),
        "PCMA" | "ALAW" | "G711A" => Some(Law::A),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
