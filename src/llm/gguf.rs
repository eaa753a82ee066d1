//! Reading GGUF files: the header, metadata values and tensors, with every failure an
//! [`LlmError`] naming the file.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Tensor};

use super::config::{Arch, WeightForm};
use super::weights::{packable, packed, packs_on, Proj, QuantParts};

use super::LlmError;

pub(crate) fn bad(path: &Path, reason: impl std::fmt::Display) -> LlmError {
    LlmError::BadGguf {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads GGUF metadata and tensors, with every failure a [`LlmError`] naming the file.
pub(crate) struct GgufReader<'a, R> {
    pub(crate) content: &'a gguf_file::Content,
    pub(crate) reader: &'a mut R,
    pub(crate) path: &'a Path,
    pub(crate) device: &'a Device,
}

impl<R: std::io::Read + std::io::Seek> GgufReader<'_, R> {
    pub(crate) fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
    pub(crate) fn qtensor(&mut self, name: &str) -> Result<QTensor, LlmError> {
        if !self.has(name) {
            return Err(bad(self.path, format!("tensor `{name}` is missing")));
        }
        self.content
            .tensor(self.reader, name, self.device)
            .map_err(|e| bad(self.path, format!("tensor `{name}`: {e}")))
    }
    pub(crate) fn dense(&mut self, name: &str) -> Result<Tensor, LlmError> {
        let q = self.qtensor(name)?;
        Ok(q.dequantize(self.device)?)
    }

    /// Raw bytes of a tensor as stored.
    pub(crate) fn raw(&mut self, name: &str) -> Result<Vec<u8>, LlmError> {
        use std::io::SeekFrom;
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| bad(self.path, format!("tensor `{name}` is missing")))?;
        let size =
            info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let mut buf = vec![0u8; size];
        self.reader
            .seek(SeekFrom::Start(
                self.content.tensor_data_offset + info.offset,
            ))
            .and_then(|_| self.reader.read_exact(&mut buf))
            .map_err(|e| bad(self.path, format!("tensor `{name}`: {e}")))?;
        Ok(buf)
    }

    /// The biases `names` concatenated (q|k|v).
    pub(crate) fn bias_of(&mut self, names: Option<&[String]>) -> Result<Option<Tensor>, LlmError> {
        match names {
            Some(bs) => {
                let ts = bs
                    .iter()
                    .map(|b| self.dense(b))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(Tensor::cat(&ts, 0)?))
            }
            None => Ok(None),
        }
    }

    /// Projections `names` (sharing their input) stacked into one, in the forms `form` asks.
    pub(crate) fn proj(
        &mut self,
        names: &[String],
        bias: Option<&[String]>,
        form: WeightForm,
    ) -> Result<Proj, LlmError> {
        let mut dtypes = Vec::new();
        let mut rows = 0;
        let mut cols = None;
        for n in names {
            let info = self
                .content
                .tensor_infos
                .get(n)
                .ok_or_else(|| bad(self.path, format!("tensor `{n}` is missing")))?;
            let dims = info.shape.dims();
            if dims.len() != 2 || cols.is_some_and(|c| c != dims[1]) {
                return Err(bad(self.path, format!("tensor `{n}` has shape {dims:?}")));
            }
            cols = Some(dims[1]);
            rows += dims[0];
            dtypes.push(info.ggml_dtype);
        }
        let cols = cols.ok_or_else(|| bad(self.path, "empty projection"))?;
        let is_float =
            |d: &GgmlDType| matches!(d, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        let all_float = dtypes.iter().all(is_float);
        let keep_quant = !all_float && form != WeightForm::F32;
        let keep_dense = all_float || form != WeightForm::Quantized;
        let mut parts = Vec::new();
        let mut dense_parts = Vec::new();
        let same_type = dtypes.iter().all(|d| *d == dtypes[0]);
        if keep_quant
            && same_type
            && dtypes[0] == GgmlDType::Q4_1
            && super::cpu::kernels_on(self.device)
        {
            let mut bytes = Vec::new();
            for n in names {
                bytes.extend(self.raw(n)?);
            }
            let q = super::cpu::q41::Q41Matrix::from_bytes(bytes, rows, cols)
                .map_err(|e| bad(self.path, format!("tensors {names:?}: {e}")))?;
            if keep_dense && !q.is_packed() {
                dense_parts.push(q.dequantize(self.device)?);
            }
            let bias = self.bias_of(bias)?;
            return Ok(Proj {
                quant: Some(QuantParts::Q41(q)),
                dense: dense_parts.pop(),
                bias,
                lora: None,
            });
        }
        if keep_quant && same_type && packable(dtypes[0]) && packs_on(self.device) {
            let mut bytes = Vec::new();
            for n in names {
                bytes.extend(self.raw(n)?);
            }
            if let Some(q) = packed(dtypes[0], &bytes, rows, cols, self.device) {
                let bias = self.bias_of(bias)?;
                return Ok(Proj {
                    quant: Some(q),
                    dense: None,
                    bias,
                    lora: None,
                });
            }
        }
        if keep_quant && same_type && names.len() > 1 {
            let mut bytes = Vec::new();
            for n in names {
                bytes.extend(self.raw(n)?);
            }
            let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
                dtypes[0],
                &bytes,
                vec![rows, cols],
                self.device,
            )
            .map_err(|e| bad(self.path, format!("tensors {names:?}: {e}")))?;
            if keep_dense {
                dense_parts.push(q.dequantize(self.device)?);
            }
            parts.push(QMatMul::from_arc(Arc::new(q))?);
        } else {
            for n in names {
                let q = self.qtensor(n)?;
                if keep_dense {
                    dense_parts.push(q.dequantize(self.device)?);
                }
                if keep_quant {
                    parts.push(QMatMul::from_arc(Arc::new(q))?);
                }
            }
        }
        let quant = QuantParts::for_device(parts, self.device)?;
        let dense = match dense_parts.len() {
            0 => None,
            1 => dense_parts.pop(),
            _ => Some(Tensor::cat(&dense_parts, 0)?),
        };
        let bias = self.bias_of(bias)?;
        Ok(Proj {
            quant,
            dense,
            bias,
            lora: None,
        })
    }
}

pub(crate) fn md_u32(
    content: &gguf_file::Content,
    path: &Path,
    key: &str,
) -> Result<usize, LlmError> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| bad(path, format!("metadata `{key}` is missing")))?
        .to_u32()
        .map(|v| v as usize)
        .map_err(|e| bad(path, format!("metadata `{key}`: {e}")))
}

pub(crate) fn md_f32(content: &gguf_file::Content, key: &str) -> Option<f32> {
    content.metadata.get(key).and_then(|v| v.to_f32().ok())
}

/// Reads a GGUF file's header, turning I/O and format errors into [`LlmError`].
pub fn read_gguf(path: &Path) -> Result<(gguf_file::Content, std::fs::File), LlmError> {
    let mut file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LlmError::NotFound(path.to_path_buf())
        } else {
            LlmError::Other(format!("{}: cannot open: {e}", path.display()))
        }
    })?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| bad(path, e))?;
    // A truncated file parses its header but lacks tensor data: check the extent now.
    let file_len = file
        .metadata()
        .map_err(|e| LlmError::Other(format!("{}: {e}", path.display())))?
        .len();
    for (name, info) in content.tensor_infos.iter() {
        let elems = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        let bytes = elems / block * info.ggml_dtype.type_size();
        let end = content.tensor_data_offset + info.offset + bytes as u64;
        if end > file_len {
            return Err(bad(
                path,
                format!("file is truncated: tensor `{name}` ends at byte {end} but the file has {file_len} bytes"),
            ));
        }
    }
    Ok((content, file))
}

pub(crate) fn arch_of(content: &gguf_file::Content, path: &Path) -> Result<Arch, LlmError> {
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| bad(path, "metadata `general.architecture` is missing"))?;
    match arch.as_str() {
        "llama" | "mistral" => Ok(Arch::Llama),
        "qwen2" => Ok(Arch::Qwen2),
        "qwen3" => Ok(Arch::Qwen3),
        other => Err(LlmError::UnsupportedArch {
            arch: other.to_string(),
            path: path.to_path_buf(),
        }),
    }
}
