//! Unit tests of `ct2_whisper`.

use super::*;
use sha2::{Digest, Sha256};

/// Writes a CTranslate2 model.bin the way model_spec.py's `_serialize` does.
struct Ct2Writer {
    vars: Vec<(String, Vec<usize>, u8, Vec<u8>)>,
    aliases: Vec<(String, String)>,
}

impl Ct2Writer {
    fn new() -> Self {
        Ct2Writer {
            vars: Vec::new(),
            aliases: Vec::new(),
        }
    }
    fn f16(&mut self, name: &str, shape: &[usize], values: impl Fn(usize) -> f32) {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .flat_map(|i| f16::from_f32(values(i)).to_le_bytes())
            .collect();
        self.vars.push((name.into(), shape.to_vec(), 4, data));
    }
    fn i16_scalar(&mut self, name: &str, value: i16) {
        self.vars
            .push((name.into(), vec![], 2, value.to_le_bytes().to_vec()));
    }
    fn bytes(&self) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend((s.len() as u16 + 1).to_le_bytes());
            out.extend(s.as_bytes());
            out.push(0);
        }
        let mut out = Vec::new();
        out.extend(6u32.to_le_bytes());
        string(&mut out, "WhisperSpec");
        out.extend(3u32.to_le_bytes());
        let mut vars = self.vars.clone();
        vars.sort_by(|a, b| a.0.cmp(&b.0)); // model_spec.py writes them sorted
        out.extend((vars.len() as u32).to_le_bytes());
        for (name, shape, dtype, data) in &vars {
            string(&mut out, name);
            out.push(shape.len() as u8);
            for d in shape {
                out.extend((*d as u32).to_le_bytes());
            }
            out.push(*dtype);
            out.extend((data.len() as u32).to_le_bytes());
            out.extend(data);
        }
        out.extend((self.aliases.len() as u32).to_le_bytes());
        for (alias, target) in &self.aliases {
            string(&mut out, alias);
            string(&mut out, target);
        }
        out
    }
}

const D: usize = 4;
const N_MELS: usize = 3;
const N_VOCAB: usize = 7;

/// A 1-layer encoder / 1-layer decoder Whisper with d = 4, whose every value encodes where
/// it sits: `row * 10 + col` plus a per-variable offset, so slices can be checked exactly.
pub(crate) fn tiny_model() -> Vec<u8> {
    let mut w = Ct2Writer::new();
    let mut next_offset = 0.0f32;
    let mut var = |w: &mut Ct2Writer, name: &str, shape: &[usize]| {
        next_offset += 100.0;
        let base = next_offset;
        let cols: usize = shape[1..].iter().product();
        w.f16(name, shape, move |i| {
            base + (i / cols.max(1)) as f32 * 10.0 + (i % cols.max(1)) as f32
        });
    };
    var(&mut w, "encoder/conv1/weight", &[D, N_MELS, 3]);
    var(&mut w, "encoder/conv1/bias", &[D]);
    var(&mut w, "encoder/conv2/weight", &[D, D, 3]);
    var(&mut w, "encoder/conv2/bias", &[D]);
    var(&mut w, "encoder/position_encodings/encodings", &[6, D]);
    var(&mut w, "decoder/position_encodings/encodings", &[5, D]);
    var(&mut w, "decoder/embeddings/weight", &[N_VOCAB, D]);
    for prefix in ["encoder", "decoder"] {
        let l = format!("{prefix}/layer_0");
        var(
            &mut w,
            &format!("{l}/self_attention/linear_0/weight"),
            &[3 * D, D],
        );
        // Fused QKV bias with CTranslate2's zero key part.
        w.f16(
            &format!("{l}/self_attention/linear_0/bias"),
            &[3 * D],
            |i| {
                if (D..2 * D).contains(&i) {
                    0.0
                } else {
                    1.0 + i as f32
                }
            },
        );
        for ln in ["self_attention/layer_norm", "ffn/layer_norm"] {
            var(&mut w, &format!("{l}/{ln}/gamma"), &[D]);
            var(&mut w, &format!("{l}/{ln}/beta"), &[D]);
        }
        var(
            &mut w,
            &format!("{l}/self_attention/linear_1/weight"),
            &[D, D],
        );
        var(&mut w, &format!("{l}/self_attention/linear_1/bias"), &[D]);
        var(&mut w, &format!("{l}/ffn/linear_0/weight"), &[4 * D, D]);
        var(&mut w, &format!("{l}/ffn/linear_0/bias"), &[4 * D]);
        var(&mut w, &format!("{l}/ffn/linear_1/weight"), &[D, 4 * D]);
        var(&mut w, &format!("{l}/ffn/linear_1/bias"), &[D]);
        var(&mut w, &format!("{prefix}/layer_norm/gamma"), &[D]);
        var(&mut w, &format!("{prefix}/layer_norm/beta"), &[D]);
        w.i16_scalar(&format!("{prefix}/num_heads"), 2);
    }
    let l = "decoder/layer_0/attention";
    var(&mut w, &format!("{l}/linear_0/weight"), &[D, D]);
    var(&mut w, &format!("{l}/linear_0/bias"), &[D]);
    var(&mut w, &format!("{l}/linear_1/weight"), &[2 * D, D]);
    w.f16(&format!("{l}/linear_1/bias"), &[2 * D], |i| {
        if i < D {
            0.0
        } else {
            7.0
        }
    });
    var(&mut w, &format!("{l}/linear_2/weight"), &[D, D]);
    var(&mut w, &format!("{l}/linear_2/bias"), &[D]);
    var(&mut w, &format!("{l}/layer_norm/gamma"), &[D]);
    var(&mut w, &format!("{l}/layer_norm/beta"), &[D]);
    w.vars.push((
        "decoder/alignment_heads".into(),
        vec![],
        2,
        1i16.to_le_bytes().to_vec(),
    ));
    w.aliases.push((
        "decoder/projection/weight".into(),
        "decoder/embeddings/weight".into(),
    ));
    w.bytes()
}

/// English-only vocabulary: 4 BPE tokens, then the specials.
pub(crate) const VOCAB: &str =
    "!\nĠthe\nĊ\nhello\n<|endoftext|>\n<|startoftranscript|>\n<|notimestamps|>\n";

/// Test-side reader of the ggml output.
struct Ggml {
    header: Vec<i32>,
    mel: (i32, i32, Vec<f32>),
    tokens: Vec<Vec<u8>>,
    tensors: Vec<(String, Vec<i32>, i32, Vec<u8>)>,
}

fn read_ggml(bytes: &[u8]) -> Ggml {
    let mut pos = 0;
    let i32_at = |pos: &mut usize| {
        let v = i32::from_le_bytes(bytes[*pos..*pos + 4].try_into().unwrap());
        *pos += 4;
        v
    };
    let header = (0..12).map(|_| i32_at(&mut pos)).collect();
    let (n_mel, n_fft) = (i32_at(&mut pos), i32_at(&mut pos));
    let mel = (0..n_mel * n_fft)
        .map(|_| f32::from_bits(i32_at(&mut pos) as u32))
        .collect();
    let n_tokens = i32_at(&mut pos);
    let tokens = (0..n_tokens)
        .map(|_| {
            let len = i32_at(&mut pos) as usize;
            pos += len;
            bytes[pos - len..pos].to_vec()
        })
        .collect();
    let mut tensors = Vec::new();
    while pos < bytes.len() {
        let (n_dims, name_len, ftype) = (i32_at(&mut pos), i32_at(&mut pos), i32_at(&mut pos));
        let dims: Vec<i32> = (0..n_dims).map(|_| i32_at(&mut pos)).collect();
        let name = String::from_utf8(bytes[pos..pos + name_len as usize].to_vec()).unwrap();
        pos += name_len as usize;
        let n = dims.iter().product::<i32>() as usize * if ftype == 1 { 2 } else { 4 };
        tensors.push((name, dims, ftype, bytes[pos..pos + n].to_vec()));
        pos += n;
    }
    Ggml {
        header,
        mel: (n_mel, n_fft, mel),
        tokens,
        tensors,
    }
}

fn f16s(data: &[u8]) -> Vec<f32> {
    data.chunks(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}
fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn parses_ct2_layout_with_aliases_and_settings() {
    let bytes = tiny_model();
    let model = Ct2Model::parse(&bytes).unwrap();
    assert_eq!(
        (model.spec_name.as_str(), model.revision),
        ("WhisperSpec", 3)
    );
    let projection = model.var("decoder/projection/weight").unwrap();
    assert_eq!(projection.shape, [N_VOCAB, D]);
    assert_eq!(
        projection.data,
        model.var("decoder/embeddings/weight").unwrap().data
    );
    assert_eq!(
        model
            .var("encoder/num_heads")
            .unwrap()
            .scalar_int()
            .unwrap(),
        2
    );
    let hp = WhisperHparams::from_model(&model).unwrap();
    assert_eq!(
        hp,
        WhisperHparams {
            n_vocab: N_VOCAB,
            n_audio_ctx: 6,
            n_audio_state: D,
            n_audio_head: 2,
            n_audio_layer: 1,
            n_text_ctx: 5,
            n_text_state: D,
            n_text_head: 2,
            n_text_layer: 1,
            n_mels: N_MELS,
        }
    );
    assert!(!hp.is_multilingual());
}

#[test]
fn rejects_truncated_and_foreign_files() {
    let bytes = tiny_model();
    let err = Ct2Model::parse(&bytes[..bytes.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    let mut wrong_version = bytes.clone();
    wrong_version[0] = 9;
    assert!(Ct2Model::parse(&wrong_version)
        .unwrap_err()
        .to_string()
        .contains("binary version 9"));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(Ct2Model::parse(&trailing).is_err());
}

#[test]
fn converts_to_whisper_cpp_layout() {
    let mut out = Vec::new();
    convert(&tiny_model(), VOCAB, &mut out).unwrap();
    let ggml = read_ggml(&out);

    assert_eq!(
        ggml.header,
        [GGML_MAGIC as i32, 7, 6, 4, 2, 1, 5, 4, 2, 1, 3, 1]
    );
    assert_eq!((ggml.mel.0, ggml.mel.1), (3, 201));
    // English-only: the BPE tokens, byte-decoded, plus <|endoftext|>.
    assert_eq!(
        ggml.tokens,
        [
            b"!".to_vec(),
            b" the".to_vec(),
            b"\n".to_vec(),
            b"hello".to_vec(),
            b"<|endoftext|>".to_vec()
        ]
    );

    let names: Vec<&str> = ggml.tensors.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(
        names[..5],
        [
            "encoder.positional_embedding",
            "encoder.conv1.weight",
            "encoder.conv1.bias",
            "encoder.conv2.weight",
            "encoder.conv2.bias"
        ]
    );
    assert_eq!(names.len(), 5 + 15 + 2 + 2 + 24 + 2, "tensor count");
    assert!(
        !names.iter().any(|n| n.contains("key.bias")),
        "Whisper has no key bias"
    );
    let tensor = |name: &str| {
        ggml.tensors
            .iter()
            .find(|t| t.0 == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };

    // Dims reversed; conv bias is [d, 1] f32; positional embeddings f32; 2-D weights f16.
    let conv1 = tensor("encoder.conv1.weight");
    assert_eq!(
        (conv1.1.clone(), conv1.2),
        (vec![3, N_MELS as i32, D as i32], 1)
    );
    let bias = tensor("encoder.conv1.bias");
    assert_eq!((bias.1.clone(), bias.2), (vec![1, D as i32], 0));
    assert_eq!(tensor("decoder.positional_embedding").2, 0);
    assert_eq!(tensor("decoder.positional_embedding").1, [D as i32, 5]);
    assert_eq!(tensor("encoder.blocks.0.attn_ln.weight").2, 0);
    assert_eq!(
        tensor("decoder.token_embedding.weight").1,
        [D as i32, N_VOCAB as i32]
    );

    // The fused QKV is split by rows: value = rows 2d..3d of the fused matrix.
    let q = f16s(&tensor("encoder.blocks.0.attn.query.weight").3);
    let v = f16s(&tensor("encoder.blocks.0.attn.value.weight").3);
    assert_eq!(
        tensor("encoder.blocks.0.attn.value.weight").1,
        [D as i32, D as i32]
    );
    assert_eq!(v[0] - q[0], (2 * D) as f32 * 10.0);
    assert_eq!(v[D + 1] - v[0], 11.0); // row 1, column 1
    let value_bias = f32s(&tensor("decoder.blocks.0.attn.value.bias").3);
    assert_eq!(value_bias, [9.0, 10.0, 11.0, 12.0]); // 1 + i for i in 2d..3d
                                                     // Cross attention: key = first half of the fused KV, value bias = its second half.
    let ck = f16s(&tensor("decoder.blocks.0.cross_attn.key.weight").3);
    let cv = f16s(&tensor("decoder.blocks.0.cross_attn.value.weight").3);
    assert_eq!(cv[0] - ck[0], D as f32 * 10.0);
    assert_eq!(
        f32s(&tensor("decoder.blocks.0.cross_attn.value.bias").3),
        [7.0; D]
    );
    assert!(names.contains(&"decoder.blocks.0.cross_attn.out.weight"));
    assert!(names.contains(&"decoder.blocks.0.cross_attn_ln.bias"));
    assert_eq!(names.last(), Some(&"decoder.ln.bias"));
}

#[test]
fn multilingual_vocabulary_stops_before_end_of_text() {
    // Multilingual vocabularies have an empty token right before <|endoftext|>.
    let tokens = bpe_tokens("a\nb\n\n<|endoftext|>\n<|startoftranscript|>\n", true).unwrap();
    assert_eq!(tokens, [b"a".to_vec(), b"b".to_vec(), Vec::new()]);
    assert!(bpe_tokens("a\nb\n", false)
        .unwrap_err()
        .to_string()
        .contains("<|endoftext|>"));
}

#[test]
fn byte_decoder_inverts_gpt2_alphabet() {
    let decoder = gpt2_byte_decoder();
    assert_eq!(decoder.len(), 256);
    assert_eq!(decoder[&'Ġ'], b' ');
    assert_eq!(decoder[&'Ċ'], b'\n');
    assert_eq!(decoder[&'Ā'], 0);
    assert_eq!(decoder[&'a'], b'a');
    assert_eq!(decoder[&'ÿ'], 0xFF);
}

#[test]
fn mel_filters_match_whisper_assets() {
    let filters = mel_filters(SAMPLE_RATE, N_FFT, 80);
    assert_eq!(filters.len(), 80 * 201);
    // sha256 of whisper's mel_filters.npz["mel_80"] as little-endian f32 (the bank that
    // whisper.cpp's published ggml files carry): bit-exact, not merely close.
    let bytes: Vec<u8> = filters.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), MEL_80_SHA256);
    // Slaney scale and normalisation: high bands are wider and, with unit area, lower.
    let row = |m: usize| &filters[m * 201..(m + 1) * 201];
    let width = |m: usize| row(m).iter().filter(|v| **v > 0.0).count();
    let peak = |m: usize| row(m).iter().cloned().fold(0.0f32, f32::max);
    assert!(
        width(79) > 5 * width(0),
        "widths {} {}",
        width(0),
        width(79)
    );
    assert!(peak(0) > 5.0 * peak(79), "peaks {} {}", peak(0), peak(79));
    assert!(filters.iter().all(|v| *v >= 0.0 && v.is_sign_positive()));
}

const MEL_80_SHA256: &str = "85818f156f7e189453901a515e4726d270d307f976e161cf9403e8caab405498";
