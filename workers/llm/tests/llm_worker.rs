//! The LLM worker binary with the test pack's SmolLM2-135M, over the real protocol.

mod support;

use std::time::Duration;
use support::{model, path_str, scratch_dir, Worker};
use understudy_ipc::{ChatMessage, ErrorCode, Frame, Request, Response};

const EXE: &str = env!("CARGO_BIN_EXE_understudy-llm");
const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";
const TIMEOUT: Duration = Duration::from_secs(120);

/// The kind of long system prompt the dialog engine sends every turn.
const SYSTEM: &str = "You are the phone assistant of Northwind Outfitters, an outdoor clothing store. \
    Answer in one or two short sentences, politely, and only with facts from this text. \
    Store hours: Monday to Friday 9 am to 6 pm, Saturday 10 am to 4 pm, closed on Sunday. \
    Address: 12 Harbour Road, Portland. Shipping: standard delivery takes 3 to 5 business days, \
    express delivery takes 1 to 2 business days and costs 12 dollars. Orders over 75 dollars ship free. \
    Returns: unworn items can be returned within 30 days with the receipt; refunds reach the card in \
    5 to 7 days. Order status: callers can track an order with the order number from the confirmation \
    e-mail. If the caller asks for a person, offer to transfer the call to an agent.";

fn start() -> Worker {
    Worker::start(EXE, &["--model", path_str(&model(MODEL)), "--threads", "1"])
}

fn generate(
    messages: Vec<ChatMessage>,
    max_tokens: u32,
    grammar: Option<&str>,
    stop: &[&str],
    stream: bool,
) -> Request {
    Request::Generate {
        messages,
        max_tokens,
        temperature: 0.0,
        grammar: grammar.map(str::to_string),
        stop: stop.iter().map(|s| s.to_string()).collect(),
        stream,
    }
}

/// Split a response sequence into the streamed token texts and the final body.
fn tokens_and_final(frames: Vec<Frame<Response>>) -> (Vec<String>, Response) {
    let mut frames = frames;
    let last = frames.pop().expect("at least one frame").envelope.body;
    let tokens = frames
        .into_iter()
        .map(|f| {
            assert!(f.envelope.more, "only the last frame ends the request");
            match f.envelope.body {
                Response::Token { text } => text,
                other => panic!("expected a token, got {other:?}"),
            }
        })
        .collect();
    (tokens, last)
}

fn generated_text(body: &Response) -> &str {
    match body {
        Response::Generated { text, .. } => text,
        other => panic!("expected generated, got {other:?}"),
    }
}

#[test]
fn ready_reports_context_threads_and_chat_template() {
    let w = start();
    let info = w.ready_info();
    assert_eq!(info["n_ctx"], 2048);
    assert_eq!(info["threads"], 1);
    assert_eq!(info["chat_template"], true, "SmolLM2 ships a chat template");
    assert_eq!(info["gpu_layers"], 0);
}

#[test]
fn grammar_constrained_classification_answers_with_an_allowed_label() {
    let mut w = start();
    let labels = ["billing", "shipping", "returns", "other"];
    let grammar = r#"root ::= "billing" | "shipping" | "returns" | "other""#;
    for (id, question) in [
        (1, "Where is my package? It has not arrived yet."),
        (2, "I was charged twice on my card."),
    ] {
        let messages = vec![
            ChatMessage::new("system", "Classify the customer's message as billing, shipping, returns or other. Answer with the label only."),
            ChatMessage::new("user", question),
        ];
        let frames = w.request(
            id,
            generate(messages, 8, Some(grammar), &[], false),
            &[],
            TIMEOUT,
        );
        let (_, body) = tokens_and_final(frames);
        let text = generated_text(&body);
        assert!(labels.contains(&text), "{text:?} is not one of {labels:?}");
    }
}

#[test]
fn streamed_tokens_concatenate_to_the_final_text() {
    let mut w = start();
    let messages = vec![ChatMessage::new(
        "user",
        "Say hello to a caller in one sentence.",
    )];
    let frames = w.request(1, generate(messages, 32, None, &[], true), &[], TIMEOUT);
    let (tokens, body) = tokens_and_final(frames);
    let Response::Generated {
        text,
        completion_tokens,
        timings,
        ..
    } = &body
    else {
        panic!("{body:?}")
    };
    assert!(
        tokens.len() >= 2,
        "expected several streamed tokens, got {tokens:?}"
    );
    assert_eq!(&tokens.concat(), text);
    assert!(*completion_tokens >= 2);
    let first = timings.first_output_ms.expect("first token time");
    assert!(first > 0.0 && first <= timings.total_ms, "{timings:?}");
}

#[test]
fn multibyte_characters_survive_token_boundaries() {
    let mut w = start();
    let expected = "Grüße, café 👋 ok";
    let grammar = format!("root ::= \"{expected}\"");
    let messages = vec![ChatMessage::new("user", "Greet me.")];
    let frames = w.request(
        1,
        generate(messages, 64, Some(&grammar), &[], true),
        &[],
        TIMEOUT,
    );
    let (tokens, body) = tokens_and_final(frames);
    assert_eq!(generated_text(&body), expected);
    assert_eq!(tokens.concat(), expected);
}

#[test]
fn stop_string_ends_generation_and_is_never_streamed() {
    let mut w = start();
    let grammar = r#"root ::= "alpha beta gamma delta epsilon""#;
    let messages = vec![ChatMessage::new("user", "List some Greek letters.")];
    let frames = w.request(
        1,
        generate(messages, 64, Some(grammar), &["gamma"], true),
        &[],
        TIMEOUT,
    );
    let (tokens, body) = tokens_and_final(frames);
    assert_eq!(generated_text(&body), "alpha beta ");
    assert_eq!(tokens.concat(), "alpha beta ");
}

#[test]
fn max_tokens_caps_an_endless_answer() {
    let mut w = start();
    // A grammar with no end: only max_tokens can stop it.
    let grammar = r#"root ::= "la " root"#;
    let messages = vec![ChatMessage::new("user", "Sing.")];
    let frames = w.request(
        1,
        generate(messages, 12, Some(grammar), &[], false),
        &[],
        TIMEOUT,
    );
    let (_, body) = tokens_and_final(frames);
    let Response::Generated {
        completion_tokens,
        text,
        ..
    } = &body
    else {
        panic!("{body:?}")
    };
    assert_eq!(*completion_tokens, 12, "{text:?}");
    assert!(text.starts_with("la la"), "{text:?}");
}

#[test]
fn second_request_with_the_same_system_prompt_is_served_from_the_kv_cache() {
    let mut w = start();
    let turn = |question: &str| {
        vec![
            ChatMessage::new("system", SYSTEM),
            ChatMessage::new("user", question),
        ]
    };

    let (_, first) = tokens_and_final(w.request(
        1,
        generate(turn("When are you open on Saturday?"), 24, None, &[], true),
        &[],
        TIMEOUT,
    ));
    let (_, second) = tokens_and_final(w.request(
        2,
        generate(
            turn("How long does express delivery take?"),
            24,
            None,
            &[],
            true,
        ),
        &[],
        TIMEOUT,
    ));
    let Response::Generated {
        prompt_tokens: p1,
        cached_tokens: c1,
        timings: t1,
        ..
    } = &first
    else {
        panic!("{first:?}")
    };
    let Response::Generated {
        prompt_tokens: p2,
        cached_tokens: c2,
        timings: t2,
        ..
    } = &second
    else {
        panic!("{second:?}")
    };
    eprintln!(
        "first token: cold {:.1} ms ({p1} prompt tokens), cached {:.1} ms ({c2} of {p2} from the cache)",
        t1.first_output_ms.unwrap(),
        t2.first_output_ms.unwrap()
    );
    assert_eq!(*c1, 0, "a fresh worker has nothing cached");
    assert!(*p1 > 150, "the system prompt is long: {p1} tokens");
    // Everything up to the user's question is shared.
    assert!(*c2 > 150 && *c2 < *p2, "cached {c2} of {p2}");

    // The same conversation again: all but the last prompt token is reused.
    let (_, third) = tokens_and_final(w.request(
        3,
        generate(
            turn("How long does express delivery take?"),
            24,
            None,
            &[],
            false,
        ),
        &[],
        TIMEOUT,
    ));
    let Response::Generated {
        prompt_tokens: p3,
        cached_tokens: c3,
        ..
    } = &third
    else {
        panic!("{third:?}")
    };
    assert_eq!(*c3, p3 - 1);
    assert_eq!(
        generated_text(&third),
        generated_text(&second),
        "greedy decoding from a reused cache is deterministic"
    );
}

#[test]
fn alternating_system_prompts_each_keep_their_cache() {
    let mut w = start();
    let classifier = "Classify the caller's request as one of: hours, shipping, returns, agent, other. \
        Answer with one word. Examples: 'when do you close' is hours; 'my parcel is late' is shipping; \
        'I want my money back' is returns; 'let me talk to a human' is agent. ".repeat(3);
    let grammar = r#"root ::= "hours" | "shipping" | "returns" | "agent" | "other""#;
    let classify = |q: &str| {
        vec![
            ChatMessage::new("system", classifier.clone()),
            ChatMessage::new("user", q),
        ]
    };
    let answer = |q: &str| {
        vec![
            ChatMessage::new("system", SYSTEM),
            ChatMessage::new("user", q),
        ]
    };
    let cached = |frames: Vec<Frame<Response>>| match tokens_and_final(frames).1 {
        Response::Generated {
            cached_tokens,
            prompt_tokens,
            ..
        } => (cached_tokens, prompt_tokens),
        other => panic!("{other:?}"),
    };
    cached(w.request(
        1,
        generate(classify("When do you open?"), 4, Some(grammar), &[], false),
        &[],
        TIMEOUT,
    ));
    cached(w.request(
        2,
        generate(answer("When do you open?"), 16, None, &[], false),
        &[],
        TIMEOUT,
    ));
    let (c3, p3) = cached(w.request(
        3,
        generate(
            classify("Where is my parcel?"),
            4,
            Some(grammar),
            &[],
            false,
        ),
        &[],
        TIMEOUT,
    ));
    let (c4, p4) = cached(w.request(
        4,
        generate(answer("Where is my parcel?"), 16, None, &[], false),
        &[],
        TIMEOUT,
    ));
    assert!(c3 > 150 && c3 < p3, "classifier prompt cached {c3} of {p3}");
    assert!(c4 > 150 && c4 < p4, "answer prompt cached {c4} of {p4}");
}

#[test]
fn cancel_stops_a_running_generation_and_the_worker_keeps_serving() {
    let mut w = start();
    let endless = r#"root ::= "la " root"#;
    w.send(
        7,
        generate(
            vec![ChatMessage::new("user", "Sing.")],
            4000,
            Some(endless),
            &[],
            true,
        ),
        &[],
    );
    let first = w.recv(TIMEOUT);
    assert!(
        matches!(first.envelope.body, Response::Token { .. }),
        "{:?}",
        first.envelope
    );
    w.send(8, Request::Cancel { target: 7 }, &[]);
    let last = loop {
        let f = w.recv(TIMEOUT);
        if !f.envelope.more {
            break f;
        }
    };
    assert_eq!(last.envelope.id, 7);
    assert!(
        matches!(
            last.envelope.body,
            Response::Error {
                code: ErrorCode::Cancelled,
                ..
            }
        ),
        "{:?}",
        last.envelope.body
    );
    let frames = w.request(
        9,
        generate(
            vec![ChatMessage::new("user", "Yes or no?")],
            4,
            Some(r#"root ::= "yes" | "no""#),
            &[],
            false,
        ),
        &[],
        TIMEOUT,
    );
    let (_, body) = tokens_and_final(frames);
    assert!(["yes", "no"].contains(&generated_text(&body)));
}

#[test]
fn bad_requests_are_answered_with_errors_not_crashes() {
    let mut w = start();
    let frames = w.request(
        1,
        generate(
            vec![ChatMessage::new("user", "hi")],
            4,
            Some("root ::= (unclosed"),
            &[],
            false,
        ),
        &[],
        TIMEOUT,
    );
    assert!(
        matches!(
            frames[0].envelope.body,
            Response::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{:?}",
        frames[0].envelope
    );
    let frames = w.request(
        2,
        Request::Embed {
            texts: vec!["x".into()],
        },
        &[],
        TIMEOUT,
    );
    assert!(
        matches!(
            frames[0].envelope.body,
            Response::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{:?}",
        frames[0].envelope
    );
    let huge = "word ".repeat(3000);
    let frames = w.request(
        3,
        generate(vec![ChatMessage::new("user", huge)], 4, None, &[], false),
        &[],
        TIMEOUT,
    );
    match &frames[0].envelope.body {
        Response::Error {
            code: ErrorCode::BadRequest,
            message,
        } => assert!(message.contains("--ctx"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Still alive and answering.
    let frames = w.request(4, Request::Ping, &[], TIMEOUT);
    assert!(matches!(frames[0].envelope.body, Response::Pong));
}

/// Spawn the worker on `path` and expect a model-load error that names it.
fn expect_load_error(path: &std::path::Path) -> String {
    let mut w = Worker::spawn(EXE, &["--model", path_str(path)], TIMEOUT);
    let message = match &w.first.envelope.body {
        Response::Error {
            code: ErrorCode::ModelLoad,
            message,
        } => message.clone(),
        other => panic!(
            "expected a model-load error, got {other:?}\nstderr:\n{}",
            w.stderr()
        ),
    };
    assert_eq!(w.first.envelope.id, 0);
    assert!(
        message.contains(path_str(path)),
        "the error must name the file: {message}"
    );
    let status = w.wait_exit(TIMEOUT);
    assert!(
        !status.success(),
        "a failed load must exit non-zero, got {status}"
    );
    message
}

#[test]
fn corrupt_missing_or_truncated_gguf_fails_with_an_error_naming_the_file() {
    let dir = scratch_dir("llm-corrupt");
    // Random bytes (a deterministic LCG, so a failure reproduces).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect();
    let corrupt = dir.join("corrupt.gguf");
    std::fs::write(&corrupt, &noise).unwrap();
    let message = expect_load_error(&corrupt);
    assert!(message.contains("not a GGUF"), "{message}");

    expect_load_error(&dir.join("missing.gguf"));

    // A real GGUF cut short: the magic is right, the tensors are not there.
    let real = std::fs::read(model(MODEL)).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &real[..1 << 20]).unwrap();
    expect_load_error(&truncated);
    let _ = std::fs::remove_dir_all(&dir);
}
