//! The embedding worker binary with the test pack's all-MiniLM-L6-v2, over the real protocol.

#[path = "../../llm/tests/support/mod.rs"]
mod support;

use std::time::Duration;
use support::{model, path_str, scratch_dir, Worker};
use understudy_ipc::{bytes_to_f32s, ErrorCode, Request, Response};

const EXE: &str = env!("CARGO_BIN_EXE_understudy-embed");
const MODEL_DIR: &str = "embed/all-MiniLM-L6-v2";
const TIMEOUT: Duration = Duration::from_secs(60);

fn start() -> Worker {
    Worker::start(EXE, &["--model-dir", path_str(&model(MODEL_DIR))])
}

/// Embed `texts`; returns one vector per text.
fn embed(w: &mut Worker, id: u64, texts: &[&str]) -> Vec<Vec<f32>> {
    let frames = w.request(
        id,
        Request::Embed {
            texts: texts.iter().map(|t| t.to_string()).collect(),
        },
        &[],
        TIMEOUT,
    );
    let frame = &frames[0];
    let Response::Embeddings { count, dim } = frame.envelope.body else {
        panic!("{:?}", frame.envelope)
    };
    assert_eq!(count as usize, texts.len());
    assert_eq!(frame.payload.len(), (count * dim * 4) as usize);
    bytes_to_f32s(&frame.payload)
        .chunks(dim as usize)
        .map(<[f32]>::to_vec)
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn similar_requests_are_closer_than_unrelated_ones() {
    let mut w = start();
    assert_eq!(w.ready_info()["dim"], 384);
    let v = embed(
        &mut w,
        1,
        &[
            "where is my order",
            "track my package",
            "what time do you open",
        ],
    );
    for e in &v {
        assert_eq!(e.len(), 384);
        assert!(
            (dot(e, e) - 1.0).abs() < 1e-4,
            "unit norm, got {}",
            dot(e, e).sqrt()
        );
    }
    let (order_package, order_hours) = (dot(&v[0], &v[1]), dot(&v[0], &v[2]));
    eprintln!(
        "cos(order, package) = {order_package:.3}, cos(order, opening hours) = {order_hours:.3}"
    );
    assert!(
        order_package > order_hours + 0.1,
        "{order_package} vs {order_hours}"
    );
    assert!(dot(&v[1], &v[0]) > dot(&v[1], &v[2]));
}

#[test]
fn padding_in_a_batch_does_not_change_a_vector() {
    let mut w = start();
    let alone = embed(&mut w, 1, &["cancel my subscription"]);
    let batch = embed(
        &mut w,
        2,
        &[
            "I would like to speak to somebody about the invoice I received last week",
            "cancel my subscription",
        ],
    );
    let diff = alone[0]
        .iter()
        .zip(&batch[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "the padded batch changed the vector by {diff}");
}

#[test]
fn empty_and_overlong_inputs_are_handled() {
    let mut w = start();
    assert!(embed(&mut w, 1, &[]).is_empty());
    let long = "please help me with my order ".repeat(200);
    let v = embed(&mut w, 2, &[&long, ""]);
    assert!(v.iter().all(|e| (dot(e, e) - 1.0).abs() < 1e-4));
}

#[test]
fn missing_model_files_fail_with_an_error_naming_them() {
    let dir = scratch_dir("embed-missing");
    let mut w = Worker::spawn(EXE, &["--model-dir", path_str(&dir)], TIMEOUT);
    match &w.first.envelope.body {
        Response::Error {
            code: ErrorCode::ModelLoad,
            message,
        } => {
            assert!(
                message.contains(path_str(&dir.join("model.safetensors"))),
                "{message}"
            )
        }
        other => panic!("expected a model-load error, got {other:?}"),
    }
    assert!(!w.wait_exit(TIMEOUT).success());
}
