//! The SIP edge: which peers may talk to the appliance, and how fast they
//! may open new requests.
//!
//! - **Allow-list** (`sip.allow_from`): when set, SIP from any other address
//!   is refused at the socket (a UDP datagram is dropped unread, a TCP
//!   connection is closed at accept), through rsipstack's transport
//!   whitelist. Peers the appliance itself sends requests to (the cloud bot
//!   in in-path mode, a transfer target) are let in too, so their answers
//!   and their in-dialog requests arrive: they are learned as the requests
//!   leave ([`LearnPeers`]).
//! - **Flood limits** (`sip.flood_requests_per_s`, `sip.flood_burst`): a
//!   token bucket per source address and method for requests that open
//!   something new (no To tag: INVITE, OPTIONS, REGISTER...). Past it, the
//!   request is dropped before any transaction exists: no reply, no timers.
//!   Requests inside a dialog (BYE, re-INVITE, INFO...) and responses are
//!   never limited, so calls in progress go on untouched.
//!
//! Every drop counts in `understudy_sip_dropped_total{reason, method}`, and
//! each source is logged at most once a minute.

use crate::metrics;
use async_trait::async_trait;
use ipnet::IpNet;
use lru::LruCache;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Method, SipMessage};
use rsipstack::transaction::endpoint::{MessageInspector, TransportEventInspector};
use rsipstack::transport::{SipAddr, TransportEvent};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sources and peers remembered at once (a flood from many addresses
/// recycles the oldest entries instead of growing memory).
const REMEMBERED: usize = 4096;
/// A source whose requests are dropped is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// New requests allowed per source and method: `per_s` on average, up to
/// `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodLimit {
    /// Sustained rate, requests per second.
    pub per_s: f64,
    /// Requests allowed back to back.
    pub burst: f64,
}

/// The edge's settings (from `[sip]`).
#[derive(Debug, Clone, Default)]
pub struct EdgeSettings {
    /// Networks SIP may come from; empty: any.
    pub allow_from: Vec<IpNet>,
    /// New-request limit per source and method; `None`: no limit.
    pub flood: Option<FloodLimit>,
}

impl EdgeSettings {
    /// Parse `sip.allow_from` entries: addresses (`192.0.2.7`) or networks
    /// (`10.1.0.0/16`).
    pub fn parse_allow_from(entries: &[String]) -> anyhow::Result<Vec<IpNet>> {
        crate::net::parse_networks("sip.allow_from", entries)
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The edge's state, shared by the transport whitelist and both inspectors.
pub struct EdgeGuard {
    settings: EdgeSettings,
    /// Peers the appliance sent requests to (let in by the allow-list).
    learned: Mutex<LruCache<IpAddr, ()>>,
    buckets: Mutex<LruCache<(IpAddr, String), Bucket>>,
    logged: Mutex<LruCache<IpAddr, Instant>>,
}

impl EdgeGuard {
    /// A guard with `settings`.
    pub fn new(settings: EdgeSettings) -> Arc<Self> {
        let size = NonZeroUsize::new(REMEMBERED).expect("non-zero");
        Arc::new(EdgeGuard {
            settings,
            learned: Mutex::new(LruCache::new(size)),
            buckets: Mutex::new(LruCache::new(size)),
            logged: Mutex::new(LruCache::new(size)),
        })
    }

    /// Whether anything is checked at all.
    pub fn is_active(&self) -> bool {
        !self.settings.allow_from.is_empty() || self.settings.flood.is_some()
    }

    /// Whether `ip` may send SIP: listed, or a peer we sent a request to.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        self.settings.allow_from.is_empty()
            || self.settings.allow_from.iter().any(|net| net.contains(&ip))
            || self.learned.lock().unwrap().get(&ip).is_some()
    }

    /// Remember `ip` as a peer the appliance talks to.
    pub fn learn(&self, ip: IpAddr) {
        if !self.settings.allow_from.is_empty() {
            self.learned.lock().unwrap().put(unmapped(ip), ());
        }
    }

    /// Whether a new (out-of-dialog) `method` request from `ip` is within its
    /// flood limit now; takes one token when it is.
    pub fn admit_new_request(&self, ip: IpAddr, method: &str, now: Instant) -> bool {
        let Some(limit) = self.settings.flood else {
            return true;
        };
        let mut buckets = self.buckets.lock().unwrap();
        let bucket = buckets.get_or_insert_mut((unmapped(ip), method.to_string()), || Bucket {
            tokens: limit.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * limit.per_s;
        bucket.tokens = (bucket.tokens + refill).min(limit.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Count (and now and then log) a dropped message.
    fn dropped(&self, ip: IpAddr, reason: &'static str, method: &str) {
        metrics::counter_inc(
            "understudy_sip_dropped_total",
            &[("reason", reason), ("method", method)],
        );
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap();
        let due = logged
            .get(&ip)
            .is_none_or(|at| now.duration_since(*at) >= LOG_EVERY);
        if due {
            logged.put(ip, now);
            match reason {
                "flood" => {
                    tracing::warn!(source = %ip, method, "SIP: dropping new requests from this source: over sip.flood_requests_per_s (logged once a minute; see understudy_sip_dropped_total)")
                }
                _ => {
                    tracing::warn!(source = %ip, "SIP: refusing a source not in sip.allow_from (logged once a minute; see understudy_sip_dropped_total)")
                }
            }
        }
    }
}

/// An IPv4 peer reached over an IPv6 socket is checked as IPv4.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn socket_addr(addr: &SipAddr) -> Option<SocketAddr> {
    addr.get_socketaddr().ok()
}

/// The flood limit, on each message the transport layer hands over.
pub struct FloodInspector(pub Arc<EdgeGuard>);

#[async_trait]
impl TransportEventInspector for FloodInspector {
    async fn handle(&self, event: TransportEvent) -> Option<TransportEvent> {
        let TransportEvent::Incoming(SipMessage::Request(request), _, from) = &event else {
            return Some(event);
        };
        let Some(from) = socket_addr(from) else {
            return Some(event);
        };
        // ACK and CANCEL belong to an INVITE already admitted.
        if matches!(request.method, Method::Ack | Method::Cancel) {
            return Some(event);
        }
        let in_dialog = request
            .to_header()
            .ok()
            .and_then(|to| to.tag().ok().flatten())
            .is_some();
        if in_dialog {
            return Some(event);
        }
        let method = request.method.to_string();
        if self.0.admit_new_request(from.ip(), &method, Instant::now()) {
            Some(event)
        } else {
            self.0.dropped(unmapped(from.ip()), "flood", &method);
            None
        }
    }
}

/// Learns the peers the appliance sends requests to (for the allow-list).
pub struct LearnPeers(pub Arc<EdgeGuard>);

impl MessageInspector for LearnPeers {
    fn before_send(&self, msg: SipMessage, dest: Option<&SipAddr>) -> SipMessage {
        if let (SipMessage::Request(_), Some(addr)) = (&msg, dest.and_then(socket_addr)) {
            self.0.learn(addr.ip());
        }
        msg
    }

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        msg
    }
}

/// The allow-list as rsipstack's transport whitelist: refuses at the socket.
pub fn whitelist(
    guard: Arc<EdgeGuard>,
) -> impl rsipstack::transport::transport_layer::TransportWhitelist {
    move |ip: IpAddr| {
        let guard = guard.clone();
        async move {
            let allowed = guard.allows(ip);
            if !allowed {
                guard.dropped(unmapped(ip), "not_allowed", "-");
            }
            allowed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow: &[&str], flood: Option<FloodLimit>) -> Arc<EdgeGuard> {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        EdgeGuard::new(EdgeSettings {
            allow_from: EdgeSettings::parse_allow_from(&allow).unwrap(),
            flood,
        })
    }

    #[test]
    fn addresses_and_networks_are_allowed_and_others_not() {
        let g = guard(&["192.0.2.7", "10.1.0.0/16", "2001:db8::/32"], None);
        assert!(g.allows("192.0.2.7".parse().unwrap()));
        assert!(g.allows("10.1.200.3".parse().unwrap()));
        assert!(g.allows("::ffff:10.1.0.1".parse().unwrap()));
        assert!(g.allows("2001:db8::5".parse().unwrap()));
        assert!(!g.allows("192.0.2.8".parse().unwrap()));
        assert!(!g.allows("10.2.0.1".parse().unwrap()));
        // A peer we sent a request to may answer.
        g.learn("198.51.100.9".parse().unwrap());
        assert!(g.allows("198.51.100.9".parse().unwrap()));
        // No list: everyone.
        assert!(guard(&[], None).allows("203.0.113.1".parse().unwrap()));
    }

    #[test]
    fn a_bad_allow_from_entry_names_itself() {
        let err = EdgeSettings::parse_allow_from(&["10.0.0.0/33".into()]).unwrap_err();
        assert!(err.to_string().contains("\"10.0.0.0/33\""), "{err}");
    }

    #[test]
    fn the_flood_limit_is_a_bucket_per_source_and_method() {
        let g = guard(
            &[],
            Some(FloodLimit {
                per_s: 10.0,
                burst: 5.0,
            }),
        );
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        let admitted = (0..20)
            .filter(|_| g.admit_new_request(a, "OPTIONS", t0))
            .count();
        assert_eq!(admitted, 5, "the burst");
        // Another source, another method: their own buckets.
        assert!(g.admit_new_request(b, "OPTIONS", t0));
        assert!(g.admit_new_request(a, "INVITE", t0));
        // 10 per second: one more every 100 ms.
        assert!(!g.admit_new_request(a, "OPTIONS", t0 + Duration::from_millis(50)));
        assert!(g.admit_new_request(a, "OPTIONS", t0 + Duration::from_millis(160)));
        assert!(!g.admit_new_request(a, "OPTIONS", t0 + Duration::from_millis(170)));
    }
}
