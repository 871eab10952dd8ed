//! CTranslate2 Whisper (`model.bin` of a faster-whisper export) -> whisper.cpp ggml.
//!
//! No registry ships a whisper.cpp model, but several ship the CTranslate2 export; the
//! conversion is lossless (both are float16 weights, only laid out differently):
//!
//! * CTranslate2 `model.bin` (ctranslate2 `specs/model_spec.py`, binary versions 4-6): u32
//!   version, string spec name, u32 revision, u32 n_vars, then per variable: string name, u8 rank,
//!   u32 dims, u8 dtype, u32 n_bytes, data; then u32 n_aliases + (alias, target) string pairs.
//!   Strings are u16 length (including a NUL) + bytes + NUL. Scalar variables are settings.
//! * whisper.cpp ggml (as its `models/convert-pt-to-ggml.py` writes it): magic, 11 i32 hparams,
//!   the mel filter bank, the BPE vocabulary, then tensors named after OpenAI's PyTorch state
//!   dict, in that state dict's order: i32 n_dims, i32 name_len, i32 ftype, dims reversed, name,
//!   data (f16 for weights with 2+ dims; f32 for 1-D tensors, conv biases and positional
//!   embeddings).
//!
//! The mapping undoes CTranslate2's fusions: self-attention QKV `[3d, d]` and cross-attention
//! KV `[2d, d]` are split by rows, and the key bias CTranslate2 fills in is dropped (Whisper has
//! none). The mel filter bank is computed here, bit-identical to whisper's `mel_filters.npz`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::ops::Range;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use half::{bf16, f16};

/// "ggml" in ASCII, the whisper.cpp file magic.
pub const GGML_MAGIC: u32 = 0x6767_6d6c;
/// Whisper's audio front end: 16 kHz, 25 ms FFT window.
const SAMPLE_RATE: f64 = 16_000.0;
const N_FFT: usize = 400;
/// whisper.cpp's own rule (whisper_vocab::is_multilingual): English-only models have 51864 tokens.
const MULTILINGUAL_MIN_VOCAB: usize = 51_865;
const END_OF_TEXT: &str = "<|endoftext|>";

/// Element type of a CTranslate2 variable (`_dtype_to_type_id` in model_spec.py).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 8-bit signed integer (quantised weights, small scalars).
    I8,
    /// 16-bit signed integer.
    I16,
    /// 32-bit signed integer.
    I32,
    /// IEEE 16-bit float.
    F16,
    /// bfloat16.
    Bf16,
}

impl DType {
    fn from_id(id: u8) -> Result<DType> {
        Ok(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::Bf16,
            _ => bail!("unknown CTranslate2 dtype id {id}"),
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One variable of a CTranslate2 model, borrowing its data from the file bytes.
#[derive(Debug, Clone)]
pub struct Ct2Var<'a> {
    /// Dimensions, outermost first; empty for a scalar.
    pub shape: Vec<usize>,
    /// Element type of `data`.
    pub dtype: DType,
    /// Raw little-endian elements, row-major.
    pub data: &'a [u8],
}

impl Ct2Var<'_> {
    /// Value of a scalar integer setting (e.g. `encoder/num_heads`).
    pub fn scalar_int(&self) -> Result<i64> {
        ensure!(
            self.shape.is_empty(),
            "not a scalar (shape {:?})",
            self.shape
        );
        Ok(match self.dtype {
            DType::I8 => self.data[0] as i8 as i64,
            DType::I16 => i16::from_le_bytes([self.data[0], self.data[1]]) as i64,
            DType::I32 => i32::from_le_bytes(self.data[..4].try_into()?) as i64,
            other => bail!("scalar of type {other:?} is not an integer"),
        })
    }
}

/// A parsed CTranslate2 `model.bin`.
#[derive(Debug)]
pub struct Ct2Model<'a> {
    /// The model spec, e.g. `WhisperSpec`.
    pub spec_name: String,
    /// Revision of the spec the file was written with.
    pub revision: u32,
    vars: BTreeMap<String, Ct2Var<'a>>,
    aliases: BTreeMap<String, String>,
}

impl<'a> Ct2Model<'a> {
    /// Parse a `model.bin` (binary versions 4 to 6) without copying the weights.
    pub fn parse(bytes: &'a [u8]) -> Result<Ct2Model<'a>> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u32("binary version")?;
        ensure!(
            (4..=6).contains(&version),
            "CTranslate2 binary version {version} is not supported (4 to 6 are)"
        );
        let spec_name = r.string("spec name")?;
        let revision = r.u32("spec revision")?;
        let n_vars = r.u32("variable count")?;
        let mut vars = BTreeMap::new();
        for _ in 0..n_vars {
            let name = r.string("variable name")?;
            let rank = r.u8(&name)? as usize;
            let shape = (0..rank)
                .map(|_| r.u32(&name).map(|d| d as usize))
                .collect::<Result<Vec<_>>>()?;
            let dtype = DType::from_id(r.u8(&name)?).with_context(|| format!("variable {name}"))?;
            let n_bytes = r.u32(&name)? as usize;
            let expected = shape.iter().product::<usize>() * dtype.size();
            ensure!(
                n_bytes == expected,
                "variable {name}: {n_bytes} bytes of data for shape {shape:?} {dtype:?} ({expected} expected)"
            );
            let data = r.take(n_bytes, &name)?;
            vars.insert(name, Ct2Var { shape, dtype, data });
        }
        let n_aliases = r.u32("alias count")?;
        let mut aliases = BTreeMap::new();
        for _ in 0..n_aliases {
            let alias = r.string("alias")?;
            let target = r.string("alias target")?;
            aliases.insert(alias, target);
        }
        ensure!(
            r.pos == bytes.len(),
            "{} unexpected bytes after the aliases",
            bytes.len() - r.pos
        );
        Ok(Ct2Model {
            spec_name,
            revision,
            vars,
            aliases,
        })
    }

    /// A variable by name, following aliases.
    pub fn var(&self, name: &str) -> Result<&Ct2Var<'a>> {
        let target = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        self.vars
            .get(target)
            .with_context(|| format!("the CTranslate2 model has no variable {name:?}"))
    }

    /// Names of every variable, sorted (aliases not included).
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    /// Number of `{prefix}/layer_N` blocks.
    fn layer_count(&self, prefix: &str) -> usize {
        let start = format!("{prefix}/layer_");
        self.vars
            .keys()
            .filter_map(|name| {
                name.strip_prefix(&start)?
                    .split('/')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .collect::<BTreeSet<_>>()
            .len()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .with_context(|| {
                format!(
                    "CTranslate2 model is truncated: {what} needs {n} bytes at offset {}",
                    self.pos
                )
            })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into()?))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let len = u16::from_le_bytes(self.take(2, what)?.try_into()?) as usize;
        let raw = self.take(len, what)?;
        let text = raw
            .strip_suffix(&[0])
            .with_context(|| format!("{what} at offset {} is not NUL-terminated", self.pos))?;
        Ok(String::from_utf8(text.to_vec())?)
    }
}

/// The 10 hyperparameters whisper.cpp reads (the 11th header field is the ftype).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperHparams {
    /// Vocabulary size (51 864 for English-only models, 51 865+ for multilingual ones).
    pub n_vocab: usize,
    /// Audio context length, in encoder positions (1500 for 30 s).
    pub n_audio_ctx: usize,
    /// Encoder width (embedding dimension).
    pub n_audio_state: usize,
    /// Encoder attention heads.
    pub n_audio_head: usize,
    /// Encoder layers.
    pub n_audio_layer: usize,
    /// Text context length, in decoder positions (tokens).
    pub n_text_ctx: usize,
    /// Decoder width (embedding dimension).
    pub n_text_state: usize,
    /// Decoder attention heads.
    pub n_text_head: usize,
    /// Decoder layers.
    pub n_text_layer: usize,
    /// Mel bands of the input spectrogram (80, or 128 for large-v3).
    pub n_mels: usize,
}

impl WhisperHparams {
    /// Read from tensor shapes and the `num_heads` settings (config.json holds none of these).
    pub fn from_model(model: &Ct2Model) -> Result<WhisperHparams> {
        ensure!(
            model.spec_name == "WhisperSpec",
            "not a Whisper model: CTranslate2 spec is {:?}",
            model.spec_name
        );
        let embeddings = &model.var("decoder/embeddings/weight")?.shape;
        let audio_pos = &model.var("encoder/position_encodings/encodings")?.shape;
        let text_pos = &model.var("decoder/position_encodings/encodings")?.shape;
        let conv1 = &model.var("encoder/conv1/weight")?.shape;
        ensure!(embeddings.len() == 2 && audio_pos.len() == 2 && text_pos.len() == 2 && conv1.len() == 3,
            "unexpected ranks: embeddings {embeddings:?}, positions {audio_pos:?} / {text_pos:?}, conv1 {conv1:?}");
        let heads = |name: &str| -> Result<usize> {
            let n = model
                .var(name)?
                .scalar_int()
                .with_context(|| name.to_string())?;
            usize::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("{name} = {n}"))
        };
        let hp = WhisperHparams {
            n_vocab: embeddings[0],
            n_audio_ctx: audio_pos[0],
            n_audio_state: audio_pos[1],
            n_audio_head: heads("encoder/num_heads")?,
            n_audio_layer: model.layer_count("encoder"),
            n_text_ctx: text_pos[0],
            n_text_state: embeddings[1],
            n_text_head: heads("decoder/num_heads")?,
            n_text_layer: model.layer_count("decoder"),
            n_mels: conv1[1],
        };
        ensure!(
            hp.n_audio_layer > 0 && hp.n_text_layer > 0,
            "model has no encoder or decoder layers"
        );
        ensure!(
            conv1[0] == hp.n_audio_state,
            "conv1 {conv1:?} does not match encoder width {}",
            hp.n_audio_state
        );
        ensure!(
            text_pos[1] == hp.n_text_state,
            "decoder positions {text_pos:?} do not match width {}",
            hp.n_text_state
        );
        Ok(hp)
    }

    /// True for a multilingual model (English-only models have a smaller vocabulary).
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= MULTILINGUAL_MIN_VOCAB
    }

    fn header_fields(&self) -> [usize; 10] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
        ]
    }
}

/// Converts the files of a CTranslate2 Whisper export into a ggml file at `output`.
pub fn convert_files(model_bin: &Path, vocabulary: &Path, output: &Path) -> Result<WhisperHparams> {
    let model =
        std::fs::read(model_bin).with_context(|| format!("cannot read {}", model_bin.display()))?;
    let vocab = std::fs::read_to_string(vocabulary)
        .with_context(|| format!("cannot read {}", vocabulary.display()))?;
    let file = std::fs::File::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let hp = convert(&model, &vocab, &mut out)?;
    out.flush()?;
    Ok(hp)
}

/// Converts a CTranslate2 Whisper `model.bin` (bytes) and its `vocabulary.txt` into ggml.
pub fn convert(model_bin: &[u8], vocabulary: &str, out: &mut impl Write) -> Result<WhisperHparams> {
    let model = Ct2Model::parse(model_bin)?;
    let hp = WhisperHparams::from_model(&model)?;
    let tokens = bpe_tokens(vocabulary, hp.is_multilingual())?;
    let tensors = tensor_plan(&model, &hp)?;

    write_i32(out, GGML_MAGIC as i32)?;
    for field in hp.header_fields() {
        write_i32(out, field as i32)?;
    }
    write_i32(out, 1)?; // ftype: mostly f16

    let n_bins = N_FFT / 2 + 1;
    write_i32(out, hp.n_mels as i32)?;
    write_i32(out, n_bins as i32)?;
    for value in mel_filters(SAMPLE_RATE, N_FFT, hp.n_mels) {
        out.write_all(&value.to_le_bytes())?;
    }

    write_i32(out, tokens.len() as i32)?;
    for token in &tokens {
        write_i32(out, token.len() as i32)?;
        out.write_all(token)?;
    }

    for tensor in &tensors {
        write_tensor(out, tensor)?;
    }
    Ok(hp)
}

fn write_i32(out: &mut impl Write, value: i32) -> std::io::Result<()> {
    out.write_all(&value.to_le_bytes())
}

/// Slaney-style mel filter bank (librosa `filters.mel(sr, n_fft, n_mels)` with its defaults:
/// fmin 0, fmax sr/2, norm "slaney"), row-major `[n_mels, n_fft/2 + 1]`. The arithmetic follows
/// librosa step by step, including computing in f64 and rounding the triangle weights to f32
/// before the normalisation, so the result is bit-identical to whisper's `mel_filters.npz`.
pub fn mel_filters(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    // Slaney's auditory scale: linear below 1 kHz, logarithmic above.
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |hz: f64| {
        if hz >= MIN_LOG_HZ {
            MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / logstep
        } else {
            hz / F_SP
        }
    };
    let mel_to_hz = |mel: f64| {
        if mel >= MIN_LOG_MEL {
            MIN_LOG_HZ * (logstep * (mel - MIN_LOG_MEL)).exp()
        } else {
            F_SP * mel
        }
    };

    // n_mels + 2 band edges, evenly spaced in mel (numpy.linspace: i * step + start, exact end).
    let n_edges = n_mels + 2;
    let (low, high) = (hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0));
    let step = (high - low) / (n_edges - 1) as f64;
    let edges_hz: Vec<f64> = (0..n_edges)
        .map(|i| {
            if i == n_edges - 1 {
                high
            } else {
                i as f64 * step + low
            }
        })
        .map(mel_to_hz)
        .collect();
    let n_bins = n_fft / 2 + 1;
    let bin_hz = 1.0 / (n_fft as f64 * (1.0 / sample_rate)); // numpy.fft.rfftfreq
    let mut weights = Vec::with_capacity(n_mels * n_bins);
    for m in 0..n_mels {
        let (left, center, right) = (edges_hz[m], edges_hz[m + 1], edges_hz[m + 2]);
        let norm = 2.0 / (right - left);
        for k in 0..n_bins {
            let f = k as f64 * bin_hz;
            let rising = -(left - f) / (center - left);
            let falling = (right - f) / (right - center);
            let triangle = rising.min(falling);
            // `if` rather than f64::max so that -0.0 becomes +0.0 as in numpy.maximum(0, x).
            let triangle = if triangle > 0.0 { triangle as f32 } else { 0.0 };
            weights.push((triangle as f64 * norm) as f32);
        }
    }
    weights
}

/// GPT-2's byte-level BPE alphabet: printable bytes stand for themselves, the others were
/// shifted to U+0100.. so that every token is printable text (`bytes_to_unicode` in GPT-2).
fn gpt2_byte_decoder() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (char::from(b), b)
            } else {
                shifted += 1;
                (char::from_u32(255 + shifted).expect("valid code point"), b)
            }
        })
        .collect()
}

/// The BPE tokens whisper.cpp expects in the vocab section, as raw bytes: the entries of
/// `vocabulary.txt` before the special tokens, plus `<|endoftext|>` for English-only models.
/// That is what whisper.cpp's published files hold (50257 entries for both kinds of model);
/// whisper.cpp names the special tokens after these itself.
pub fn bpe_tokens(vocabulary: &str, multilingual: bool) -> Result<Vec<Vec<u8>>> {
    // One token per line; an empty line is a real (empty) token in multilingual vocabularies.
    let lines: Vec<&str> = vocabulary
        .strip_suffix('\n')
        .unwrap_or(vocabulary)
        .split('\n')
        .collect();
    let eot = lines
        .iter()
        .position(|t| *t == END_OF_TEXT)
        .with_context(|| format!("vocabulary has no {END_OF_TEXT} token"))?;
    let count = if multilingual { eot } else { eot + 1 };
    let decoder = gpt2_byte_decoder();
    lines[..count]
        .iter()
        .enumerate()
        .map(|(id, token)| {
            token
                .chars()
                .map(|c| decoder.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .with_context(|| {
                    format!("vocabulary token {id} ({token:?}) is not GPT-2 byte-level text")
                })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutType {
    F32,
    F16,
}

/// One ggml tensor: which CTranslate2 variable (and which rows of it) it comes from.
struct TensorOut<'m> {
    name: String,
    source: &'m Ct2Var<'m>,
    /// Rows of the source's first dimension (for the fused attention projections).
    rows: Range<usize>,
    /// Shape in PyTorch order; written reversed.
    shape: Vec<usize>,
    out: OutType,
}

/// The ggml tensors in OpenAI's state-dict order, mapped to CTranslate2 variables.
fn tensor_plan<'m>(model: &'m Ct2Model<'m>, hp: &WhisperHparams) -> Result<Vec<TensorOut<'m>>> {
    let mut plan = Planner {
        model,
        tensors: Vec::new(),
    };

    plan.whole(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
        Some(OutType::F32),
    )?;
    for conv in ["conv1", "conv2"] {
        plan.whole(
            &format!("encoder.{conv}.weight"),
            &format!("encoder/{conv}/weight"),
            None,
        )?;
        // A [d] bias written as [d, 1] f32, as whisper.cpp's converter does.
        let bias = model.var(&format!("encoder/{conv}/bias"))?;
        plan.push(
            format!("encoder.{conv}.bias"),
            bias,
            0..bias.shape[0],
            vec![bias.shape[0], 1],
            OutType::F32,
        );
    }
    let d = hp.n_audio_state;
    for layer in 0..hp.n_audio_layer {
        let src = format!("encoder/layer_{layer}");
        let dst = format!("encoder.blocks.{layer}");
        plan.self_attention(&dst, &src, d)?;
        plan.mlp(&dst, &src)?;
    }
    plan.layer_norm("encoder.ln_post", "encoder/layer_norm")?;

    plan.whole(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
        Some(OutType::F32),
    )?;
    plan.whole(
        "decoder.token_embedding.weight",
        "decoder/embeddings/weight",
        None,
    )?;
    let d = hp.n_text_state;
    for layer in 0..hp.n_text_layer {
        let src = format!("decoder/layer_{layer}");
        let dst = format!("decoder.blocks.{layer}");
        plan.self_attention(&dst, &src, d)?;
        plan.cross_attention(&dst, &src, d)?;
        plan.mlp(&dst, &src)?;
    }
    plan.layer_norm("decoder.ln", "decoder/layer_norm")?;
    Ok(plan.tensors)
}

struct Planner<'m> {
    model: &'m Ct2Model<'m>,
    tensors: Vec<TensorOut<'m>>,
}

impl<'m> Planner<'m> {
    fn push(
        &mut self,
        name: String,
        source: &'m Ct2Var<'m>,
        rows: Range<usize>,
        shape: Vec<usize>,
        out: OutType,
    ) {
        self.tensors.push(TensorOut {
            name,
            source,
            rows,
            shape,
            out,
        });
    }

    /// A whole variable; 2+ dims are f16 unless `force` says otherwise, 1-D ones f32.
    fn whole(&mut self, name: &str, var: &str, force: Option<OutType>) -> Result<()> {
        let source = self.model.var(var)?;
        ensure!(
            !source.shape.is_empty(),
            "{var} is a scalar, expected a tensor"
        );
        let out = force.unwrap_or(if source.shape.len() >= 2 {
            OutType::F16
        } else {
            OutType::F32
        });
        self.push(
            name.to_string(),
            source,
            0..source.shape[0],
            source.shape.clone(),
            out,
        );
        Ok(())
    }

    /// Rows `part * d .. (part + 1) * d` of a fused `[n * d, ...]` projection.
    fn slice(
        &mut self,
        name: String,
        var: &str,
        part: usize,
        parts: usize,
        d: usize,
    ) -> Result<()> {
        let source = self.model.var(var)?;
        ensure!(
            source.shape.first() == Some(&(parts * d)),
            "{var} has shape {:?}, expected {parts} x {d} fused rows",
            source.shape
        );
        let mut shape = source.shape.clone();
        shape[0] = d;
        let out = if shape.len() >= 2 {
            OutType::F16
        } else {
            OutType::F32
        };
        self.push(name, source, part * d..(part + 1) * d, shape, out);
        Ok(())
    }

    fn linear(&mut self, dst: &str, src: &str) -> Result<()> {
        self.whole(&format!("{dst}.weight"), &format!("{src}/weight"), None)?;
        self.whole(&format!("{dst}.bias"), &format!("{src}/bias"), None)
    }

    fn layer_norm(&mut self, dst: &str, src: &str) -> Result<()> {
        self.whole(&format!("{dst}.weight"), &format!("{src}/gamma"), None)?;
        self.whole(&format!("{dst}.bias"), &format!("{src}/beta"), None)
    }

    /// Fused QKV (`linear_0`, `[3d, d]`) split into query/key/value; `linear_1` is the output.
    fn self_attention(&mut self, dst: &str, src: &str, d: usize) -> Result<()> {
        let fused = format!("{src}/self_attention/linear_0");
        self.slice(
            format!("{dst}.attn.query.weight"),
            &format!("{fused}/weight"),
            0,
            3,
            d,
        )?;
        self.slice(
            format!("{dst}.attn.query.bias"),
            &format!("{fused}/bias"),
            0,
            3,
            d,
        )?;
        self.slice(
            format!("{dst}.attn.key.weight"),
            &format!("{fused}/weight"),
            1,
            3,
            d,
        )?;
        self.warn_if_key_bias(&format!("{fused}/bias"), 1, d)?;
        self.slice(
            format!("{dst}.attn.value.weight"),
            &format!("{fused}/weight"),
            2,
            3,
            d,
        )?;
        self.slice(
            format!("{dst}.attn.value.bias"),
            &format!("{fused}/bias"),
            2,
            3,
            d,
        )?;
        self.linear(
            &format!("{dst}.attn.out"),
            &format!("{src}/self_attention/linear_1"),
        )?;
        self.layer_norm(
            &format!("{dst}.attn_ln"),
            &format!("{src}/self_attention/layer_norm"),
        )
    }

    /// Cross attention: `linear_0` query, `linear_1` fused KV `[2d, d]`, `linear_2` output.
    fn cross_attention(&mut self, dst: &str, src: &str, d: usize) -> Result<()> {
        let attn = format!("{src}/attention");
        self.linear(
            &format!("{dst}.cross_attn.query"),
            &format!("{attn}/linear_0"),
        )?;
        let fused = format!("{attn}/linear_1");
        self.slice(
            format!("{dst}.cross_attn.key.weight"),
            &format!("{fused}/weight"),
            0,
            2,
            d,
        )?;
        self.warn_if_key_bias(&format!("{fused}/bias"), 0, d)?;
        self.slice(
            format!("{dst}.cross_attn.value.weight"),
            &format!("{fused}/weight"),
            1,
            2,
            d,
        )?;
        self.slice(
            format!("{dst}.cross_attn.value.bias"),
            &format!("{fused}/bias"),
            1,
            2,
            d,
        )?;
        self.linear(
            &format!("{dst}.cross_attn.out"),
            &format!("{attn}/linear_2"),
        )?;
        self.layer_norm(
            &format!("{dst}.cross_attn_ln"),
            &format!("{attn}/layer_norm"),
        )
    }

    fn mlp(&mut self, dst: &str, src: &str) -> Result<()> {
        self.linear(&format!("{dst}.mlp.0"), &format!("{src}/ffn/linear_0"))?;
        self.linear(&format!("{dst}.mlp.2"), &format!("{src}/ffn/linear_1"))?;
        self.layer_norm(&format!("{dst}.mlp_ln"), &format!("{src}/ffn/layer_norm"))
    }

    /// Whisper has no key bias and CTranslate2 fills zeros in its place, so the slice is dropped.
    /// A non-zero one would still not change the model (q.b is the same for every key, and
    /// softmax ignores a constant), but it means the input is not what we think: say so.
    fn warn_if_key_bias(&self, var: &str, part: usize, d: usize) -> Result<()> {
        let bias = self.model.var(var)?;
        let size = bias.dtype.size();
        let slice = &bias.data[part * d * size..(part + 1) * d * size];
        let all_zero = slice
            .chunks(size)
            .all(|v| decode(v, bias.dtype).unwrap_or(1.0) == 0.0);
        if !all_zero {
            tracing::warn!(
                variable = var,
                "key bias is not zero; dropping it (whisper.cpp has none)"
            );
        }
        Ok(())
    }
}

/// One element as f32, for float dtypes.
fn decode(bytes: &[u8], dtype: DType) -> Option<f32> {
    Some(match dtype {
        DType::F32 => f32::from_le_bytes(bytes.try_into().ok()?),
        DType::F16 => f16::from_le_bytes(bytes.try_into().ok()?).to_f32(),
        DType::Bf16 => bf16::from_le_bytes(bytes.try_into().ok()?).to_f32(),
        _ => return None,
    })
}

fn write_tensor(out: &mut impl Write, tensor: &TensorOut) -> Result<()> {
    let source = tensor.source;
    let row_elems: usize = source.shape[1..].iter().product();
    let elem = source.dtype.size();
    let data =
        &source.data[tensor.rows.start * row_elems * elem..tensor.rows.end * row_elems * elem];

    write_i32(out, tensor.shape.len() as i32)?;
    write_i32(out, tensor.name.len() as i32)?;
    write_i32(out, if tensor.out == OutType::F16 { 1 } else { 0 })?;
    for dim in tensor.shape.iter().rev() {
        write_i32(out, *dim as i32)?;
    }
    out.write_all(tensor.name.as_bytes())?;

    let converted: Vec<u8> = match (source.dtype, tensor.out) {
        (DType::F16, OutType::F16) | (DType::F32, OutType::F32) => data.to_vec(),
        (DType::F16 | DType::F32 | DType::Bf16, out_type) => data
            .chunks_exact(elem)
            .flat_map(|v| {
                let value = decode(v, source.dtype).expect("float dtype");
                match out_type {
                    OutType::F32 => value.to_le_bytes().to_vec(),
                    OutType::F16 => f16::from_f32(value).to_le_bytes().to_vec(),
                }
            })
            .collect(),
        (dtype, _) => bail!(
            "variable for {} is {dtype:?}: quantized CTranslate2 models cannot be converted; use a float16 or float32 export",
            tensor.name
        ),
    };
    out.write_all(&converted)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
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
}
