//! SDP offer/answer (RFC 3264) for one audio stream: G.711 (PCMU, PCMA) at
//! 8 kHz and `telephone-event` (RFC 4733).
//!
//! Parsing uses `rtc-sdp` (it survived 200k mutated inputs without a panic);
//! it does not know the static payload types 0 and 8 without an `rtpmap`
//! line, so those are mapped here. Our own SDP is written by hand: it is a
//! dozen fixed lines.

use crate::audio::g711::Law;
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

/// An SDP media direction (RFC 3264 section 6.1), as the remote side states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sends and receives (the default).
    SendRecv,
    /// The remote side only sends (it put us on hold); we only receive.
    SendOnly,
    /// The remote side only receives; we send, it does not.
    RecvOnly,
    /// Neither side sends.
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer states for an offer in this direction.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// The side that stated this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// The side that stated this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// What a negotiation settled for the audio stream, from the remote side's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaParams {
    /// Where the remote side wants RTP (`None`: the old hold form `c=0.0.0.0`).
    pub remote: Option<SocketAddr>,
    /// The G.711 law of the chosen codec.
    pub law: Law,
    /// The payload type for `law` (0 or 8, or a dynamic number the offer chose).
    pub payload_type: u8,
    /// RFC 4733 events, when both sides do them.
    pub dtmf_payload_type: Option<u8>,
    /// The remote side's direction attribute.
    pub remote_direction: Direction,
    /// The remote side's `a=ptime`, if any (we always send 20 ms).
    pub ptime_ms: Option<u32>,
}

impl MediaParams {
    /// We may send RTP: the remote side receives and gave an address.
    pub fn we_send(&self) -> bool {
        self.remote.is_some() && self.remote_direction.receives()
    }

    /// The remote side says it sends RTP (so silence from it means trouble).
    pub fn remote_sends(&self) -> bool {
        self.remote_direction.sends()
    }

    /// The direction our answer states.
    pub fn local_direction(&self) -> Direction {
        self.remote_direction.reversed()
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
fn format_codec(md: &rtc_sdp::MediaDescription, pt: u8) -> Option<(String, u32)> {
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
mod tests {
    use super::*;

    const BOTH: &[Law] = &[Law::Mu, Law::A];

    fn sipp_offer(formats: &str, extra: &str) -> String {
        format!(
            "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP {formats}\r\n{extra}"
        )
    }

    fn local() -> LocalMedia {
        LocalMedia {
            address: "127.0.0.1".parse().unwrap(),
            rtp_port: 20000,
            session_id: 7,
            version: 1,
            codecs: BOTH.to_vec(),
        }
    }

    #[test]
    fn static_payload_types_without_rtpmap_are_g711() {
        let n = negotiate_offer(sipp_offer("8 0", "").as_bytes(), BOTH).unwrap();
        assert_eq!(n.params.law, Law::A, "the offerer's order wins");
        assert_eq!(n.params.payload_type, 8);
        assert_eq!(n.params.remote, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(n.params.dtmf_payload_type, None);
        assert_eq!(n.params.remote_direction, Direction::SendRecv);
    }

    #[test]
    fn telephone_event_and_dynamic_types_are_found() {
        let extra = "a=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=ptime:30\r\n";
        let n = negotiate_offer(sipp_offer("18 0 96", extra).as_bytes(), BOTH).unwrap();
        assert_eq!((n.params.law, n.params.payload_type), (Law::Mu, 0));
        assert_eq!(n.params.dtmf_payload_type, Some(96));
        assert_eq!(n.params.ptime_ms, Some(30));
        let a = answer(&local(), &n);
        assert!(a.contains("m=audio 20000 RTP/AVP 0 96\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:96 telephone-event/8000\r\n"), "{a}");
        assert!(a.contains("a=sendrecv\r\n"), "{a}");
        // Our answer parses back to the same stream.
        let back = read_answer(a.as_bytes(), BOTH).unwrap();
        assert_eq!(back.remote, Some("127.0.0.1:20000".parse().unwrap()));
        assert_eq!(back.dtmf_payload_type, Some(96));
    }

    #[test]
    fn hold_directions_are_answered_in_reverse() {
        for (offered, answered, we_send) in [
            ("a=sendonly\r\n", "a=recvonly", false),
            ("a=inactive\r\n", "a=inactive", false),
            ("a=recvonly\r\n", "a=sendonly", true),
        ] {
            let n = negotiate_offer(sipp_offer("0", offered).as_bytes(), BOTH).unwrap();
            assert_eq!(n.params.we_send(), we_send, "{offered}");
            assert!(answer(&local(), &n).contains(answered), "{offered}");
        }
        // The old hold form: c=0.0.0.0.
        let old = sipp_offer("0", "").replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        let n = negotiate_offer(old.as_bytes(), BOTH).unwrap();
        assert_eq!(n.params.remote, None);
        assert!(!n.params.we_send());
    }

    #[test]
    fn unacceptable_offers_say_why() {
        let g729 = negotiate_offer(
            sipp_offer("18", "a=rtpmap:18 G729/8000\r\n").as_bytes(),
            BOTH,
        )
        .unwrap_err();
        assert_eq!(g729.status(), 488);
        assert!(g729.to_string().contains("PCMU"), "{g729}");
        let srtp = sipp_offer("0", "").replace("RTP/AVP", "RTP/SAVP");
        assert_eq!(
            negotiate_offer(srtp.as_bytes(), BOTH).unwrap_err().status(),
            488
        );
        // Only PCMA allowed by the configuration.
        assert_eq!(
            negotiate_offer(sipp_offer("0", "").as_bytes(), &[Law::A])
                .unwrap_err()
                .status(),
            488
        );
        // A wideband PCMU is not ours either.
        let wide = sipp_offer("97", "a=rtpmap:97 PCMU/16000\r\n");
        assert_eq!(
            negotiate_offer(wide.as_bytes(), BOTH).unwrap_err().status(),
            488
        );
        assert_eq!(negotiate_offer(b"hello", BOTH).unwrap_err().status(), 400);
        assert_eq!(negotiate_offer(b"", BOTH).unwrap_err().status(), 400);
    }

    #[test]
    fn answers_keep_every_offered_line_and_reject_the_rest() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                    m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                    m=audio 5002 RTP/AVP 8\r\nc=IN IP4 10.0.0.2\r\na=sendonly\r\n";
        let n = negotiate_offer(body.as_bytes(), BOTH).unwrap();
        assert_eq!(
            n.params.remote,
            Some("10.0.0.2:5002".parse().unwrap()),
            "media-level c= wins"
        );
        let a = answer(&local(), &n);
        let m_lines: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            ["m=video 0 RTP/AVP 96", "m=audio 20000 RTP/AVP 8"],
            "{a}"
        );
        assert!(a.contains("a=recvonly"));
    }

    #[test]
    fn our_offer_is_valid_sdp_with_both_laws_and_events() {
        let o = offer(&local(), Direction::SendRecv);
        let n = negotiate_offer(o.as_bytes(), BOTH).unwrap();
        assert_eq!(
            (
                n.params.law,
                n.params.payload_type,
                n.params.dtmf_payload_type
            ),
            (Law::Mu, 0, Some(101))
        );
        let only_a = negotiate_offer(o.as_bytes(), &[Law::A]).unwrap();
        assert_eq!(only_a.params.payload_type, 8);
    }

    #[test]
    fn lf_only_and_missing_final_newline_parse() {
        let body =
            "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0";
        assert!(negotiate_offer(body.as_bytes(), BOTH).is_ok());
    }

    #[test]
    fn the_origin_version_moves_only_when_our_sdp_changes() {
        let mut session = SdpSession::new(local());
        let first = session.answer(sipp_offer("0", "").as_bytes()).unwrap().0;
        let same = session.answer(sipp_offer("0", "").as_bytes()).unwrap().0;
        assert_eq!(first, same);
        assert!(first.contains("o=understudy 7 1 "), "{first}");
        let hold = session
            .answer(sipp_offer("0", "a=sendonly\r\n").as_bytes())
            .unwrap()
            .0;
        assert!(
            hold.contains("o=understudy 7 2 ") && hold.contains("a=recvonly"),
            "{hold}"
        );
        assert!(!session.params.as_ref().unwrap().we_send());
    }

    #[test]
    fn host_names_are_refused_not_resolved() {
        let body = sipp_offer("0", "").replace("c=IN IP4 127.0.0.1", "c=IN IP4 sbc.invalid");
        let e = negotiate_offer(body.as_bytes(), BOTH).unwrap_err();
        assert_eq!(e.status(), 488, "{e}");
    }
}
