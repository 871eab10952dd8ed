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

mod tensors;
mod tokens;
use tensors::*;
use tokens::*;

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

#[cfg(test)]
pub(crate) mod tests;
