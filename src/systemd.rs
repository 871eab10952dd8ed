//! systemd integration (`Type=notify` with a watchdog), without a C library:
//! the protocol is one datagram to `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        // Abstract socket namespace.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr))
    } else {
        socket.send_to(message.as_bytes(), &path)
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Tell systemd the service is ready (and what it is doing).
pub fn notify_ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={status}"));
}

/// Update the status line `systemctl status` shows.
pub fn notify_status(status: &str) {
    notify(&format!("STATUS={status}"));
}

/// Tell systemd the service is shutting down.
pub fn notify_stopping() {
    notify("STOPPING=1");
}

/// Ping systemd's watchdog at half its interval, if one is configured.
pub fn spawn_watchdog() {
    let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let period = Duration::from_micros(usec / 2);
    tokio::spawn(async move {
        loop {
            notify("WATCHDOG=1");
            tokio::time::sleep(period).await;
        }
    });
}
