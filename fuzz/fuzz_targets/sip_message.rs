//! A SIP message off the wire, and everything the server reads from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::SipMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = SipMessage::try_from(data) else { return };
    let _ = msg.to_bytes();
    let _ = msg.call_id_header().map(|h| h.value().to_string());
    let _ = msg.cseq_header().and_then(|c| c.seq());
    let _ = msg.cseq_header().and_then(|c| c.method());
    let _ = msg.via_header().and_then(|v| v.typed());
    let _ = msg.to_header().and_then(|t| t.tag());
    let _ = msg.from_header().and_then(|f| f.typed());
    let _ = msg.typed_contact_headers();
    let _ = msg.typed_record_route_headers();
    let _ = msg.typed_route_headers();
    if let SipMessage::Request(req) = &msg {
        let _ = rsipstack::dialog::DialogId::try_from((req, rsipstack::transaction::key::TransactionRole::Server));
        let _ = rsipstack::transaction::key::TransactionKey::from_request(req, rsipstack::transaction::key::TransactionRole::Server);
        let content_type = req.header_value("Content-Type").unwrap_or_default();
        let _ = understudy::transport::rtp::dtmf::key_from_info(&content_type, &req.body);
        let _ = understudy::transport::sip::transfer::sipfrag_status(&req.body);
        let _ = req.header_value("Event");
    }
});
