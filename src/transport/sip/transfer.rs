//! Transfer to a human, the safety net's exit. First the caller's side is
//! asked to call the target itself (REFER, RFC 3515) and the NOTIFY sipfrags
//! say how that went; when it refuses or the transfer fails, the appliance
//! calls the target and relays the media ([`super::outbound`]), so the caller
//! is never lost.

use super::context::SipContext;
use super::outbound::{self, PlacedCall};
use crate::config::TransferMode;
use crate::metrics;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, StatusCodeKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How a transfer ended.
pub(super) enum TransferResult {
    /// The caller's side took the call to the target.
    Referred,
    /// We called the target; the two legs are to be relayed.
    Bridged(Box<PlacedCall>),
    /// Neither worked.
    Failed(String),
}

/// The transfer settings.
#[derive(Debug, Clone)]
pub struct TransferSettings {
    /// Overrides the bot's target.
    pub target: Option<String>,
    /// Host for targets that are not URIs.
    pub domain: Option<String>,
    /// REFER, the bridge, or REFER falling back to the bridge.
    pub mode: TransferMode,
    /// How long a transfer may take (REFER until the final NOTIFY; bridge until answered).
    pub timeout: Duration,
}

/// The SIP URI to transfer to: the configured override, else the bot's target;
/// a number or name becomes `sip:<it>@<domain>`, the domain defaulting to the
/// host the call came from (the SBC routes numbers).
pub fn resolve_target(
    bot_target: &str,
    settings: &TransferSettings,
    came_from: SocketAddr,
) -> Result<String, String> {
    let target = settings.target.as_deref().unwrap_or(bot_target).trim();
    if target.is_empty() {
        return Err(
            "no transfer target: set the bot's transfer target or sip.transfer_target".into(),
        );
    }
    let lower = target.to_ascii_lowercase();
    let uri = if lower.starts_with("sip:") || lower.starts_with("sips:") {
        target.to_string()
    } else {
        let user: String = target
            .strip_prefix("tel:")
            .unwrap_or(target)
            .chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '(' | ')' | '.'))
            .collect();
        let host = match &settings.domain {
            Some(domain) => domain.clone(),
            None => came_from.to_string(),
        };
        format!("sip:{user}@{host}")
    };
    rsipstack::sip::Uri::try_from(uri.as_str())
        .map_err(|e| format!("transfer target {uri:?} is not a SIP URI: {e}"))?;
    Ok(uri)
}

/// The status code in a `message/sipfrag` body ("SIP/2.0 200 OK").
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}

/// The target of a REFER's `Refer-To` value (RFC 3515 2.1): a name-addr
/// (`"Desk" <sip:agent@pbx;transport=udp?Replaces=...>;param`) or an
/// addr-spec (`sip:agent@pbx`). The URI comes back as it was written,
/// URI parameters and escaped headers included (the caller's side applies
/// a `Replaces`); display name and header parameters are dropped.
pub fn refer_to_target(value: &str) -> Result<String, String> {
    let (uri, params) = split_name_addr(value)?;
    rsipstack::sip::parse_params(params.trim().trim_start_matches(';'))
        .map_err(|e| format!("bad Refer-To parameters {params:?}: {e}"))?;
    let lower = uri.to_ascii_lowercase();
    if let Some(number) = lower.strip_prefix("tel:") {
        if number.trim().is_empty() {
            return Err(format!("Refer-To {uri:?} has no number"));
        }
        return Ok(uri.to_string());
    }
    let parsed = rsipstack::sip::Uri::try_from(uri)
        .map_err(|e| format!("Refer-To {uri:?} is not a SIP URI: {e}"))?;
    match parsed.scheme {
        Some(rsipstack::sip::Scheme::Sip | rsipstack::sip::Scheme::Sips) => {}
        _ => return Err(format!("Refer-To {uri:?} is not a sip:, sips: or tel: URI")),
    }
    if parsed.host().to_string().is_empty() {
        return Err(format!("Refer-To {uri:?} has no host"));
    }
    Ok(uri.to_string())
}

/// Split a name-addr or addr-spec header value (RFC 3261 20.10, 25.1) into
/// the URI and the header parameters after it. A quoted display name may
/// hold anything (`<`, `>`, `;`, escaped quotes), a token one no specials;
/// without brackets everything after the first `;` is a header parameter.
fn split_name_addr(value: &str) -> Result<(&str, &str), String> {
    let value = value.trim();
    let bracketed = if let Some(quoted) = value.strip_prefix('"') {
        let mut chars = quoted.char_indices();
        let mut close = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    close = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let close = close.ok_or_else(|| format!("unterminated display name in {value:?}"))?;
        quoted[close + 1..].trim_start()
    } else if let Some(open) = value.find('<') {
        let name = &value[..open];
        if name.contains(['"', '>', ';', ',', '?']) {
            return Err(format!("bad display name in {value:?}"));
        }
        &value[open..]
    } else {
        if value.is_empty() {
            return Err("empty Refer-To".into());
        }
        return Ok(value.split_once(';').unwrap_or((value, "")));
    };
    let inner = bracketed
        .strip_prefix('<')
        .ok_or_else(|| format!("a display name without <URI> in {value:?}"))?;
    let close = inner
        .find('>')
        .ok_or_else(|| format!("missing '>' in {value:?}"))?;
    let uri = inner[..close].trim();
    if uri.is_empty() {
        return Err(format!("no URI in {value:?}"));
    }
    Ok((uri, &inner[close + 1..]))
}

/// What the transfer needs from the call.
pub(super) struct Job {
    pub shared: Arc<SipContext>,
    pub dialog: InviteDialog,
    pub target: String,
    /// Status codes of the NOTIFY sipfrags the call receives.
    pub sipfrags: mpsc::Receiver<u16>,
    /// Who is calling, for the bridge's From.
    pub caller_user: String,
    pub referred_by: String,
}

/// Run a transfer to its end.
pub(super) async fn run(mut job: Job) -> TransferResult {
    let settings = job.shared.settings.transfer.clone();
    if settings.mode != TransferMode::Bridge {
        match refer(
            &job.dialog,
            &job.target,
            &job.referred_by,
            &mut job.sipfrags,
            settings.timeout,
        )
        .await
        {
            Ok(()) => {
                metrics::counter_inc(
                    "understudy_sip_transfers_total",
                    &[("via", "refer"), ("result", "ok")],
                );
                return TransferResult::Referred;
            }
            Err(e) => {
                metrics::counter_inc(
                    "understudy_sip_transfers_total",
                    &[("via", "refer"), ("result", "failed")],
                );
                if settings.mode == TransferMode::Refer {
                    return TransferResult::Failed(e);
                }
                tracing::info!(target = %job.target, reason = %e, "REFER did not work: calling the target ourselves");
            }
        }
    }
    match tokio::time::timeout(
        settings.timeout,
        outbound::dial(
            &job.shared,
            &job.target,
            &job.caller_user,
            job.shared.media.clone(),
        ),
    )
    .await
    {
        Ok(Ok(b)) => {
            metrics::counter_inc(
                "understudy_sip_transfers_total",
                &[("via", "bridge"), ("result", "ok")],
            );
            TransferResult::Bridged(Box::new(b))
        }
        Ok(Err(e)) => {
            metrics::counter_inc(
                "understudy_sip_transfers_total",
                &[("via", "bridge"), ("result", "failed")],
            );
            TransferResult::Failed(e)
        }
        Err(_) => {
            metrics::counter_inc(
                "understudy_sip_transfers_total",
                &[("via", "bridge"), ("result", "failed")],
            );
            TransferResult::Failed(format!(
                "{} did not answer within {} s",
                job.target,
                settings.timeout.as_secs()
            ))
        }
    }
}

/// REFER the caller's side to `target` and follow the NOTIFYs until a final status.
async fn refer(
    dialog: &InviteDialog,
    target: &str,
    referred_by: &str,
    sipfrags: &mut mpsc::Receiver<u16>,
    timeout: Duration,
) -> Result<(), String> {
    let headers = vec![Header::ReferredBy(format!("<{referred_by}>").into())];
    let refer_to = format!("<{target}>");
    let response = tokio::time::timeout(timeout, dialog.refer(refer_to, Some(headers), None))
        .await
        .map_err(|_| "no answer to REFER".to_string())?
        .map_err(|e| format!("REFER failed: {e}"))?;
    let Some(response) = response else {
        return Err("the dialog is not established".into());
    };
    if response.status_code.kind() != StatusCodeKind::Successful {
        return Err(format!("REFER refused with {}", response.status_code));
    }
    tracing::info!(%target, status = %response.status_code, "REFER accepted; following the NOTIFYs");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, sipfrags.recv()).await {
            Ok(Some(code)) if code < 200 => tracing::debug!(code, "transfer in progress"),
            Ok(Some(code)) if code < 300 => return Ok(()),
            Ok(Some(code)) => return Err(format!("the transfer failed with {code}")),
            Ok(None) => return Err("the call ended during the transfer".into()),
            Err(_) => return Err(format!("no final NOTIFY within {} s", timeout.as_secs())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TransferSettings {
        TransferSettings {
            target: None,
            domain: None,
            mode: TransferMode::ReferThenBridge,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn targets_become_sip_uris() {
        let sbc: SocketAddr = "10.1.2.3:5060".parse().unwrap();
        assert_eq!(
            resolve_target("sip:agents@10.9.9.9", &settings(), sbc).unwrap(),
            "sip:agents@10.9.9.9"
        );
        assert_eq!(
            resolve_target("+1 (555) 010-2000", &settings(), sbc).unwrap(),
            "sip:+15550102000@10.1.2.3:5060"
        );
        assert_eq!(
            resolve_target("tel:+4930123", &settings(), sbc).unwrap(),
            "sip:+4930123@10.1.2.3:5060"
        );
        let with_domain = TransferSettings {
            domain: Some("pbx.local".into()),
            ..settings()
        };
        assert_eq!(
            resolve_target("2000", &with_domain, sbc).unwrap(),
            "sip:2000@pbx.local"
        );
        let overridden = TransferSettings {
            target: Some("sip:desk@127.0.0.1:5070".into()),
            ..settings()
        };
        assert_eq!(
            resolve_target("2000", &overridden, sbc).unwrap(),
            "sip:desk@127.0.0.1:5070"
        );
        assert!(resolve_target(" ", &settings(), sbc)
            .unwrap_err()
            .contains("sip.transfer_target"));
    }

    /// The legal forms of RFC 3261 (name-addr / addr-spec, 20.10 and 25.1)
    /// and RFC 3515 (`Refer-To`, with escaped headers such as RFC 3891's
    /// `Replaces`).
    #[test]
    fn refer_to_values_in_every_legal_form() {
        let ok = |v: &str| refer_to_target(v).unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert_eq!(ok("<sip:agent@10.0.0.5>"), "sip:agent@10.0.0.5");
        assert_eq!(
            ok("  <sip:agent@10.0.0.5:5070> "),
            "sip:agent@10.0.0.5:5070"
        );
        // addr-spec: no brackets; what follows `;` is a header parameter.
        assert_eq!(
            ok("sip:alice@atlanta.example.com"),
            "sip:alice@atlanta.example.com"
        );
        assert_eq!(
            ok("sip:agent@pbx.example.com;x-reason=queue"),
            "sip:agent@pbx.example.com"
        );
        // name-addr with a quoted display name, URI parameters inside the brackets.
        assert_eq!(
            ok("\"Support Desk\" <sip:agent@pbx.example.com;transport=udp>"),
            "sip:agent@pbx.example.com;transport=udp"
        );
        assert_eq!(ok("\"Desk\"<sip:desk@pbx>"), "sip:desk@pbx");
        // a token display name, and header parameters after the brackets.
        assert_eq!(
            ok("Support Desk <sip:agent@pbx>;x-queue=3"),
            "sip:agent@pbx"
        );
        // `<`, `>`, `;`, `,` and escaped quotes inside the quoted name.
        assert_eq!(
            ok("\"Sales \\\"EMEA\\\" <2nd>; line, A\" <sips:sales@pbx.example.com>"),
            "sips:sales@pbx.example.com"
        );
        // Escaped headers stay as they are (the caller's side applies them).
        assert_eq!(
            ok("<sips:alice@atlanta.example.com?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994>"),
            "sips:alice@atlanta.example.com?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994"
        );
        assert_eq!(
            ok("\"Bob\" <sip:bob@biloxi.example.net?Accept-Contact=sip:bobsdesk.biloxi.example.net&Call-ID%3D55432%40alicepc.atlanta.example.com>;x=1"),
            "sip:bob@biloxi.example.net?Accept-Contact=sip:bobsdesk.biloxi.example.net&Call-ID%3D55432%40alicepc.atlanta.example.com"
        );
        assert_eq!(ok("<tel:+15550102000>"), "tel:+15550102000");
        // Not a target: clear errors, never a half-parsed URI.
        for bad in [
            "",
            "   ",
            "<>",
            "\"Desk\" <sip:desk@pbx",
            "\"Desk <sip:desk@pbx>",
            "Desk",
            "<http://example.com/agent>",
            "<sip:>",
        ] {
            assert!(refer_to_target(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"\r\nSIP/2.0 100 Trying"), Some(100));
        assert_eq!(
            sipfrag_status(b"SIP/2.0 603 Declined\r\nContent-Length: 0\r\n"),
            Some(603)
        );
        assert_eq!(sipfrag_status(b"HTTP/1.1 200 OK"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 2000 OK"), None);
        assert_eq!(sipfrag_status(&[0xff]), None);
    }
}
