//! Unit tests of `the crate root`.

use super::*;

#[test]
fn request_round_trips_through_a_frame() {
    let env = Envelope {
        id: 7,
        more: false,
        body: Request::Generate {
            messages: vec![ChatMessage::new("user", "hi")],
            max_tokens: 16,
            temperature: 0.0,
            grammar: Some("root ::= \"a\"".into()),
            stop: vec![],
            stream: true,
        },
    };
    let bytes = encode_frame(&env, b"xyz");
    let frame: Frame<Request> = read_frame(&mut &bytes[..]).unwrap().unwrap();
    assert_eq!(frame.envelope, env);
    assert_eq!(frame.payload, b"xyz");
}

#[test]
fn header_shape_is_flat_json() {
    let env = Envelope {
        id: 3,
        more: true,
        body: Response::Token { text: "Hel".into() },
    };
    let bytes = encode_frame(&env, &[]);
    let header = std::str::from_utf8(&bytes[8..]).unwrap();
    assert_eq!(
        header,
        r#"{"id":3,"more":true,"kind":"token","text":"Hel"}"#
    );
}

#[test]
fn clean_eof_is_none_and_truncation_is_an_error() {
    let empty: &[u8] = &[];
    assert!(read_frame::<_, Request>(&mut &empty[..]).unwrap().is_none());
    let bytes = encode_frame(
        &Envelope {
            id: 1,
            more: false,
            body: Request::Ping,
        },
        b"abcdef",
    );
    let cut = &bytes[..bytes.len() - 2];
    assert!(matches!(
        read_frame::<_, Request>(&mut &cut[..]),
        Err(FrameError::Io(_))
    ));
}

#[test]
fn oversized_and_garbage_headers_are_rejected() {
    let mut bytes = vec![];
    bytes.extend_from_slice(&(MAX_HEADER_BYTES + 1).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        read_frame::<_, Request>(&mut &bytes[..]),
        Err(FrameError::HeaderTooLarge(_))
    ));
    let mut bytes = vec![];
    bytes.extend_from_slice(&5u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(b"{oops");
    assert!(matches!(
        read_frame::<_, Request>(&mut &bytes[..]),
        Err(FrameError::BadHeader(_))
    ));
}

#[test]
fn pcm_helpers_round_trip() {
    let s = [0i16, 1, -1, i16::MAX, i16::MIN];
    assert_eq!(bytes_to_pcm16(&pcm16_to_bytes(&s)), s);
    let f = [0.5f32, -0.25];
    assert_eq!(bytes_to_f32s(&f32s_to_bytes(&f)), f);
}
