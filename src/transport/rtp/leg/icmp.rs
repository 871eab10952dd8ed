//! ICMP errors on an RTP socket: a peer whose port closed answers our
//! packets with "port unreachable", which tells a dead cloud bot from a
//! quiet one at once.

use tokio::net::UdpSocket;

/// Ask the kernel for ICMP errors on this unconnected socket (Linux passes
/// "port unreachable" only to connected sockets otherwise): they then come
/// back as a refused receive, and wait in the socket's error queue.
pub(super) fn report_icmp_errors(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    let (level, name) = match socket.local_addr() {
        Ok(a) if a.is_ipv6() => (libc::SOL_IPV6, libc::IPV6_RECVERR),
        _ => (libc::SOL_IP, libc::IP_RECVERR),
    };
    // SAFETY: a valid descriptor, and an int option with its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot enable ICMP errors on an RTP socket: a dead peer is noticed by its silence only");
    }
}

/// Empty the socket's error queue (see [`report_icmp_errors`]); the error
/// itself has been seen, and the queue must not fill up.
pub(super) fn drain_error_queue(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    for _ in 0..64 {
        let mut data = [0u8; 256];
        let mut control = [0u8; 256];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain data; every pointer in it is to a live
        // local buffer of the stated length.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len() as _;
            libc::recvmsg(
                socket.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            break;
        }
    }
}
