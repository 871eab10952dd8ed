//! The SIP side: transports (UDP, TCP and TLS, with `rsipstack`'s transaction and
//! dialog layers: retransmission timers, Via/branch, tags, CSeq, route sets),
//! and what each incoming request gets: OPTIONS a readiness answer, a new
//! INVITE a call (or 503/488/400), an in-dialog request its dialog, and
//! anything else a clear refusal.

use super::auth::Refused;
use super::call::{self, CallSetup};
use super::context::{SipContext, MAX_BYE_REASONS};
use super::edge::{self, EdgeGuard, FloodInspector, LearnPeers};
use super::sdp::{self, LocalMedia};
use super::{SipSettings, ALLOW, USER_AGENT};
use crate::continuity::Continuity;
use crate::metrics;
use crate::session::admission::{Admission, Ingress, Refusal};
use crate::transport::rtp::{MediaLeg, RtpPorts};
use anyhow::{Context, Result};
use lru::LruCache;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::tls::TlsListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running SIP server; dropping it does not stop it, [`SipServer::shutdown`] does.
pub struct SipServer {
    /// Where SIP is served (with the bound port when port 0 was asked for).
    pub listen: SocketAddr,
    /// Where SIP over TLS is served, when it is.
    pub tls_listen: Option<SocketAddr>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SipServer {
    /// Bind the transports and start answering.
    pub async fn start(
        settings: SipSettings,
        admission: Arc<Admission>,
        continuity: Option<Arc<Continuity>>,
    ) -> Result<SipServer> {
        let cancel = CancellationToken::new();
        let transport_layer = TransportLayer::new(cancel.child_token());
        let mut listen = settings.listen;
        if settings.udp {
            let udp = UdpConnection::create_connection(listen, None, Some(cancel.child_token()))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("cannot listen for SIP on UDP {listen} (in use? set --sip-listen or sip.listen)"))?;
            // Port 0 asks for any free port; TCP then takes the same one.
            if let Ok(bound) = udp.get_addr().get_socketaddr() {
                listen.set_port(bound.port());
            }
            transport_layer.add_transport(udp.into());
        }
        let tcp = settings.tcp;
        if tcp {
            // rsipstack binds the listener later and only logs a failure: try it here first.
            let probe = std::net::TcpListener::bind(listen)
                .with_context(|| format!("cannot listen for SIP on TCP {listen} (in use? set --sip-listen or sip.listen)"))?;
            listen = probe.local_addr()?;
            drop(probe);
            let tcp = TcpListenerConnection::new(listen, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            transport_layer.add_transport(tcp.into());
        }
        let mut tls_listen = None;
        if let Some(tls) = &settings.tls {
            let probe = std::net::TcpListener::bind(tls.listen).with_context(|| {
                format!(
                    "cannot listen for SIP over TLS on {} (in use? set sip.tls_listen)",
                    tls.listen
                )
            })?;
            let addr = probe.local_addr()?;
            drop(probe);
            let conn = TlsListenerConnection::new(addr, None, tls.rsip_config())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            transport_layer.add_transport(conn.into());
            tls_listen = Some(addr);
        }
        let guard = EdgeGuard::new(settings.edge.clone());
        if !settings.edge.allow_from.is_empty() {
            transport_layer.set_whitelist(edge::whitelist(guard.clone()));
        }
        let mut builder = EndpointBuilder::new();
        builder
            .with_user_agent(USER_AGENT)
            .with_transport_layer(transport_layer)
            .with_cancel_token(cancel.clone())
            .with_inspector(Box::new(LearnPeers(guard.clone())));
        if settings.edge.flood.is_some() {
            builder.with_transport_inspector(Box::new(FloodInspector(guard.clone())));
        }
        let endpoint = builder.build();
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let rtp_bind = settings.rtp_bind.unwrap_or(listen.ip());
        let shared = Arc::new(SipContext {
            ports: RtpPorts::new(rtp_bind, settings.rtp_ports.0, settings.rtp_ports.1),
            media: settings.media.clone(),
            dialogs,
            admission,
            listen,
            tls_port: tls_listen.map(|a| a.port()),
            settings,
            continuity,
            bye_reasons: Mutex::new(LruCache::new(MAX_BYE_REASONS)),
        });
        tracing::info!(
            addr = %listen,
            udp = shared.settings.udp,
            tcp = shared.settings.tcp,
            tls = ?tls_listen,
            capacity = shared.admission.capacity(),
            allow_from = ?shared.settings.edge.allow_from,
            flood_limit = ?shared.settings.edge.flood,
            "SIP: listening"
        );
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = endpoint.serve() => tracing::warn!("SIP endpoint stopped"),
                _ = serve_requests(shared, incoming) => {}
            }
        });
        let server = SipServer {
            listen,
            tls_listen,
            cancel,
            task,
        };
        let listeners = [(tcp, Some(listen), "TCP"), (true, tls_listen, "TLS")];
        for (on, addr, what) in listeners {
            let (true, Some(addr)) = (on, addr) else {
                continue;
            };
            if let Err(e) = accepting(addr, what).await {
                server.shutdown().await;
                return Err(e);
            }
        }
        Ok(server)
    }

    /// Stop serving (calls in progress lose their signalling).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// rsipstack binds stream listeners in its own task and only logs a
/// failure; readiness must mean callers can connect, so check they do.
async fn accepting(listen: SocketAddr, what: &str) -> Result<()> {
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            Ipv6Addr::LOCALHOST.into()
        });
    }
    let started = tokio::time::Instant::now();
    loop {
        match tokio::net::TcpStream::connect(target).await {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() >= Duration::from_secs(5) => anyhow::bail!(
                "SIP over {what} is not accepting on {listen} after 5 s ({e}); the log says why (\"Failed to serve listener\")"
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn serve_requests(
    shared: Arc<SipContext>,
    mut incoming: rsipstack::transaction::TransactionReceiver,
) {
    while let Some(tx) = incoming.recv().await {
        let shared = shared.clone();
        // One task per transaction: a slow or broken request never holds up another.
        tokio::spawn(async move {
            let method = tx.original.method;
            if let Err(e) = on_request(shared, tx).await {
                tracing::warn!(%method, error = %e, "SIP request failed");
            }
        });
    }
}

fn has_to_tag(tx: &Transaction) -> bool {
    tx.original
        .to_header()
        .ok()
        .and_then(|to| to.tag().ok().flatten())
        .is_some()
}

async fn on_request(shared: Arc<SipContext>, mut tx: Transaction) -> Result<(), rsipstack::Error> {
    let in_dialog = has_to_tag(&tx);
    match (tx.original.method, in_dialog) {
        (Method::Invite, false) => {
            if authenticated(&shared, &mut tx).await? {
                on_invite(shared, tx).await
            } else {
                Ok(())
            }
        }
        (Method::Options, false) => on_options(&shared, &mut tx).await,
        (Method::Ack, _) => Ok(()),
        (Method::Register | Method::Publish | Method::Subscribe | Method::Message, false) => {
            tx.reply_with(
                StatusCode::MethodNotAllowed,
                vec![Header::Allow(ALLOW.into())],
                None,
            )
            .await
        }
        (Method::Bye, true) => {
            keep_bye_reason(&shared, &tx);
            match shared.dialogs.match_dialog(&tx) {
                Some(mut dialog) => dialog.handle(&mut tx).await,
                None => tx.reply(StatusCode::CallTransactionDoesNotExist).await,
            }
        }
        _ => match shared.dialogs.match_dialog(&tx) {
            Some(mut dialog) => dialog.handle(&mut tx).await,
            None => {
                tracing::debug!(method = %tx.original.method, "no such dialog");
                tx.reply(StatusCode::CallTransactionDoesNotExist).await
            }
        },
    }
}

fn keep_bye_reason(shared: &SipContext, tx: &Transaction) {
    let Some(reason) = tx.original.header_value("Reason") else {
        return;
    };
    let Ok(call_id) = tx.original.call_id_header() else {
        return;
    };
    // Read and removed by the call.
    shared
        .bye_reasons
        .lock()
        .unwrap()
        .put(call_id.value().to_string(), reason);
}

fn retry_after(shared: &SipContext) -> Header {
    Header::RetryAfter(shared.settings.retry_after_s.to_string().into())
}

/// OPTIONS: 200 only when the engines are warm and a call slot is free, so an
/// SBC's keep-alive probe sees what an INVITE would get.
async fn on_options(shared: &SipContext, tx: &mut Transaction) -> Result<(), rsipstack::Error> {
    let mut headers = vec![
        Header::Allow(ALLOW.into()),
        Header::Accept("application/sdp".into()),
        Header::Supported("replaces".into()),
    ];
    // In-path with a live cloud, calls are relayed to it and need no local
    // engine or slot: we can take them even while loading or full.
    let relaying = shared
        .continuity
        .as_ref()
        .is_some_and(|c| c.in_path() && c.routes_to_cloud());
    match if relaying {
        Ok(())
    } else {
        shared.admission.probe()
    } {
        Ok(()) => {
            metrics::counter_inc("understudy_sip_options_total", &[("status", "200")]);
            tx.reply_with(StatusCode::OK, headers, None).await
        }
        Err(refusal) => {
            metrics::counter_inc("understudy_sip_options_total", &[("status", "503")]);
            metrics::counter_inc(
                "understudy_sip_503_total",
                &[("request", "options"), ("reason", refusal.label())],
            );
            headers.push(retry_after(shared));
            headers.push(Header::Warning(
                format!("399 understudy \"{}\"", refusal_text(refusal)).into(),
            ));
            tx.reply_with(StatusCode::ServiceUnavailable, headers, None)
                .await
        }
    }
}

fn refusal_text(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::NotReady => "engines not ready",
        Refusal::Full => "at capacity",
        Refusal::Draining => "draining",
    }
}

fn peer_of(tx: &Transaction) -> Option<SocketAddr> {
    tx.connection
        .as_ref()?
        .get_remote_addr()?
        .get_socketaddr()
        .ok()
}

/// A new call: admit it, settle the media, create the dialog, start the call.
/// With `sip.auth_users` set: whether this new INVITE carries a user's
/// credentials; if not it has been answered `401` with a challenge.
async fn authenticated(
    shared: &SipContext,
    tx: &mut Transaction,
) -> Result<bool, rsipstack::Error> {
    let Some(auth) = &shared.settings.auth else {
        return Ok(true);
    };
    let header = tx.original.headers.iter().find_map(|h| match h {
        Header::Authorization(a) => Some(a.value().to_string()),
        _ => None,
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let refused = match auth.check("INVITE", header.as_deref(), now) {
        Ok(user) => {
            tracing::debug!(user, "INVITE authenticated");
            metrics::counter_inc("understudy_sip_auth_total", &[("result", "ok")]);
            return Ok(true);
        }
        Err(r) => r,
    };
    let (result, stale) = match &refused {
        Refused::Missing => ("challenged", false),
        Refused::Stale => ("stale", true),
        Refused::Wrong(user) => {
            let peer = peer_of(tx);
            let user = user.as_deref().unwrap_or("-");
            tracing::warn!(user, from = ?peer, "INVITE with wrong credentials: 401 (check the SBC's trunk user and password against sip.auth_users)");
            ("wrong", false)
        }
    };
    metrics::counter_inc("understudy_sip_auth_total", &[("result", result)]);
    tx.reply_with(
        StatusCode::Unauthorized,
        vec![Header::WwwAuthenticate(auth.challenge(now, stale).into())],
        None,
    )
    .await?;
    Ok(false)
}

async fn on_invite(shared: Arc<SipContext>, mut tx: Transaction) -> Result<(), rsipstack::Error> {
    let call_id = tx
        .original
        .call_id_header()
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    // In-path mode with a live cloud: the call is bridged to the cloud bot and
    // needs no engine (a slot is taken only if the local bot takes it over).
    let to_cloud = shared
        .continuity
        .as_ref()
        .is_some_and(|c| c.in_path() && c.routes_to_cloud());
    let admitted = match if to_cloud {
        Ok(None)
    } else {
        shared.admission.admit(Ingress::Sip).map(Some)
    } {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(call = %call_id, reason = refusal.label(), "INVITE refused: 503");
            metrics::counter_inc("understudy_sip_calls_total", &[("result", refusal.label())]);
            metrics::counter_inc(
                "understudy_sip_503_total",
                &[("request", "invite"), ("reason", refusal.label())],
            );
            let headers = vec![
                retry_after(&shared),
                Header::Warning(format!("399 understudy \"{}\"", refusal_text(refusal)).into()),
            ];
            return tx
                .reply_with(StatusCode::ServiceUnavailable, headers, None)
                .await;
        }
    };
    // An INVITE without a body is a delayed offer: we offer in the 200 OK.
    let offer = if tx.original.body.is_empty() {
        None
    } else {
        match sdp::negotiate_offer(&tx.original.body, &shared.settings.codecs) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::info!(call = %call_id, error = %e, status = e.status(), "INVITE refused: SDP");
                metrics::counter_inc("understudy_sip_calls_total", &[("result", "sdp_refused")]);
                let status = StatusCode::from(e.status());
                let warning = Header::Warning(
                    format!("304 understudy \"{}\"", e.to_string().replace('"', "'")).into(),
                );
                return tx.reply_with(status, vec![warning], None).await;
            }
        }
    };
    let peer = peer_of(&tx).unwrap_or(shared.listen);
    let local_ip = shared.local_ip_for(peer.ip());
    let socket = match shared.ports.bind().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(call = %call_id, error = %e, "INVITE refused: no RTP port");
            metrics::counter_inc("understudy_sip_calls_total", &[("result", "no_rtp_port")]);
            return tx
                .reply_with(
                    StatusCode::ServiceUnavailable,
                    vec![retry_after(&shared)],
                    None,
                )
                .await;
        }
    };
    let leg = match MediaLeg::spawn(socket, shared.media.clone(), format!("{call_id}/caller")) {
        Ok(leg) => leg,
        Err(e) => {
            tracing::error!(call = %call_id, error = %e, "cannot start the RTP leg");
            return tx.reply(StatusCode::ServerInternalError).await;
        }
    };
    let transport = tx
        .connection
        .as_ref()
        .map(|c| c.transport())
        .unwrap_or(rsipstack::sip::Transport::Udp);
    let contact = super::contact_uri(local_ip, shared.port_for(transport), transport);
    let (state_tx, states) = shared.dialogs.new_dialog_state_channel();
    let dialog =
        match shared
            .dialogs
            .get_or_create_server_invite(&tx, state_tx, None, Some(contact))
        {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(call = %call_id, error = %e, "INVITE refused: cannot make a dialog");
                return tx.reply(StatusCode::BadRequest).await;
            }
        };
    let local = LocalMedia {
        address: local_ip,
        rtp_port: leg.local.port(),
        session_id: rand::random::<u32>() as u64,
        version: 1,
        codecs: shared.settings.codecs.clone(),
    };
    tracing::info!(call = %call_id, from = %peer, %transport, rtp = %leg.local, "incoming call");
    let setup = CallSetup {
        shared: shared.clone(),
        dialog: dialog.clone(),
        states,
        leg,
        offer,
        local,
        admitted,
        to_cloud,
        call_id,
        peer,
    };
    tokio::spawn(call::run(setup));
    // Drive the INVITE transaction (100 Trying, our answer, the ACK or CANCEL).
    let mut dialog = dialog;
    dialog.handle(&mut tx).await
}
