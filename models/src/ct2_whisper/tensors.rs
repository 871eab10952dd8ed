//! Which CTranslate2 variables become which ggml tensors, in whisper.cpp's
//! names, shapes and types, and writing them.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutType {
    F32,
    F16,
}

/// One ggml tensor: which CTranslate2 variable (and which rows of it) it comes from.
pub(super) struct TensorOut<'m> {
    pub(super) name: String,
    pub(super) source: &'m Ct2Var<'m>,
    /// Rows of the source's first dimension (for the fused attention projections).
    pub(super) rows: Range<usize>,
    /// Shape in PyTorch order; written reversed.
    pub(super) shape: Vec<usize>,
    pub(super) out: OutType,
}

/// The ggml tensors in OpenAI's state-dict order, mapped to CTranslate2 variables.
pub(super) fn tensor_plan<'m>(
    model: &'m Ct2Model<'m>,
    hp: &WhisperHparams,
) -> Result<Vec<TensorOut<'m>>> {
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

pub(super) struct Planner<'m> {
    pub(super) model: &'m Ct2Model<'m>,
    pub(super) tensors: Vec<TensorOut<'m>>,
}

impl<'m> Planner<'m> {
    pub(super) fn push(
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
    pub(super) fn whole(&mut self, name: &str, var: &str, force: Option<OutType>) -> Result<()> {
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
    pub(super) fn slice(
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

    pub(super) fn linear(&mut self, dst: &str, src: &str) -> Result<()> {
        self.whole(&format!("{dst}.weight"), &format!("{src}/weight"), None)?;
        self.whole(&format!("{dst}.bias"), &format!("{src}/bias"), None)
    }

    pub(super) fn layer_norm(&mut self, dst: &str, src: &str) -> Result<()> {
        self.whole(&format!("{dst}.weight"), &format!("{src}/gamma"), None)?;
        self.whole(&format!("{dst}.bias"), &format!("{src}/beta"), None)
    }

    /// Fused QKV (`linear_0`, `[3d, d]`) split into query/key/value; `linear_1` is the output.
    pub(super) fn self_attention(&mut self, dst: &str, src: &str, d: usize) -> Result<()> {
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
    pub(super) fn cross_attention(&mut self, dst: &str, src: &str, d: usize) -> Result<()> {
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

    pub(super) fn mlp(&mut self, dst: &str, src: &str) -> Result<()> {
        self.linear(&format!("{dst}.mlp.0"), &format!("{src}/ffn/linear_0"))?;
        self.linear(&format!("{dst}.mlp.2"), &format!("{src}/ffn/linear_1"))?;
        self.layer_norm(&format!("{dst}.mlp_ln"), &format!("{src}/ffn/layer_norm"))
    }

    /// Whisper has no key bias and CTranslate2 fills zeros in its place, so the slice is dropped.
    /// A non-zero one would still not change the model (q.b is the same for every key, and
    /// softmax ignores a constant), but it means the input is not what we think: say so.
    pub(super) fn warn_if_key_bias(&self, var: &str, part: usize, d: usize) -> Result<()> {
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
pub(super) fn decode(bytes: &[u8], dtype: DType) -> Option<f32> {
    Some(match dtype {
        DType::F32 => f32::from_le_bytes(bytes.try_into().ok()?),
        DType::F16 => f16::from_le_bytes(bytes.try_into().ok()?).to_f32(),
        DType::Bf16 => bf16::from_le_bytes(bytes.try_into().ok()?).to_f32(),
        _ => return None,
    })
}

pub(super) fn write_tensor(out: &mut impl Write, tensor: &TensorOut) -> Result<()> {
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
