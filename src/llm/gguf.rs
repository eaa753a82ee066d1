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
    let file_len = file
        .metadata()
        .map_err(|e| LlmError::Other(format!("{}: {e}", path.display())))?
        .len();
    {
        let mut r = std::io::BufReader::new(&mut file);
        check_layout(&mut r, file_len).map_err(|e| bad(path, e))?;
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| LlmError::Other(format!("{}: {e}", path.display())))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| bad(path, e))?;
    // A truncated file parses its header but lacks tensor data: check the extent now.
    for (name, info) in content.tensor_infos.iter() {
        // check_layout bounded each tensor's element count, so this cannot overflow.
        let elems = info.shape.elem_count() as u64;
        let block = info.ggml_dtype.block_size() as u64;
        let bytes = elems / block * info.ggml_dtype.type_size() as u64;
        let end = content
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|s| s.checked_add(bytes));
        match end {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(bad(
                    path,
                    format!(
                        "file is truncated: tensor `{name}` (offset {}, {bytes} bytes) ends past the file's {file_len} bytes",
                        info.offset
                    ),
                ))
            }
        }
    }
    Ok((content, file))
}

/// Metadata array elements a GGUF may hold in all. A 256k-token vocabulary with its
/// merges and token types is about 800k; the cap bounds the memory the metadata takes
/// (each element is a [`gguf_file::Value`] of 32 bytes or more, whatever its size on disk).
pub const GGUF_MAX_METADATA_ELEMENTS: u64 = 1 << 23;
/// Nesting of metadata arrays (arrays of arrays) a GGUF may use.
pub const GGUF_MAX_ARRAY_DEPTH: u32 = 4;
/// Elements a tensor may have (2^40: far beyond any model, and small enough that byte
/// sizes and offsets computed from it never overflow).
pub const GGUF_MAX_TENSOR_ELEMENTS: u64 = 1 << 40;

/// Walks a GGUF header before candle reads it, so that no length, count or shape in the
/// file drives an allocation or a loop beyond what the file holds, and nothing candle
/// would divide by or multiply with is zero or overflows: every string and array must fit
/// in the bytes left, metadata arrays are bounded in total ([`GGUF_MAX_METADATA_ELEMENTS`])
/// and in depth, tensors have at most 4 dimensions whose product stays below
/// [`GGUF_MAX_TENSOR_ELEMENTS`], and `general.alignment` is a power of two. The error
/// names the field; the caller adds the file.
pub fn check_layout<R: std::io::Read>(r: &mut R, file_len: u64) -> Result<(), String> {
    let mut w = Walker {
        r,
        pos: 0,
        file_len,
        elements: 0,
        wide: true,
    };
    let magic = w.u32("magic")?;
    if magic != 0x4655_4747 && magic != 0x4747_5546 {
        return Err(format!("not a GGUF file (magic 0x{magic:08x})"));
    }
    let version = w.u32("version")?;
    let wide = match version {
        1 => false,
        2 | 3 => true,
        v => return Err(format!("unsupported GGUF version {v}")),
    };
    w.wide = wide;
    let n_tensors = w.len("tensor_count")?;
    let n_kv = w.len("metadata_kv_count")?;
    // A metadata entry takes at least 13 bytes, a tensor entry at least 24.
    w.fits(
        "header",
        n_kv.saturating_mul(w.len_size() + 5)
            .saturating_add(n_tensors.saturating_mul(w.len_size() + 16)),
        &format!("{n_tensors} tensors and {n_kv} metadata entries"),
    )?;
    for i in 0..n_kv {
        let key = w.string(&format!("metadata entry {i}: key"))?;
        let ty = w.u32(&format!("metadata `{key}`: type"))?;
        let alignment = key == "general.alignment";
        let v = w.value(&key, ty, 0)?;
        if alignment {
            if let Some(a) = v {
                if a == 0 || !a.is_power_of_two() {
                    return Err(format!(
                        "metadata `general.alignment`: {a} is not a power of two"
                    ));
                }
            }
        }
    }
    for i in 0..n_tensors {
        let name = w.string(&format!("tensor {i}: name"))?;
        let n_dims = w.u32(&format!("tensor `{name}`: n_dimensions"))?;
        if n_dims > 4 {
            return Err(format!("tensor `{name}`: {n_dims} dimensions (at most 4)"));
        }
        let mut elems: u64 = 1;
        for d in 0..n_dims {
            let field = format!("tensor `{name}`: dimension {d}");
            let dim = if w.wide {
                w.u64(&field)?
            } else {
                w.u32(&field)? as u64
            };
            elems = elems
                .checked_mul(dim)
                .filter(|e| *e <= GGUF_MAX_TENSOR_ELEMENTS)
                .ok_or_else(|| {
                    format!(
                        "tensor `{name}`: shape has more than {GGUF_MAX_TENSOR_ELEMENTS} elements"
                    )
                })?;
        }
        w.u32(&format!("tensor `{name}`: type"))?;
        w.u64(&format!("tensor `{name}`: offset"))?;
    }
    Ok(())
}

/// A bounded reader of GGUF header fields.
struct Walker<'r, R> {
    r: &'r mut R,
    pos: u64,
    file_len: u64,
    /// Metadata array elements seen so far.
    elements: u64,
    /// GGUF v2+: lengths are u64 (v1: u32).
    wide: bool,
}

impl<R: std::io::Read> Walker<'_, R> {
    fn take<const N: usize>(&mut self, field: &str) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!("{field}: the file ends at byte {}", self.file_len)
            } else {
                format!("{field}: {e}")
            }
        })?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self, field: &str) -> Result<u32, String> {
        self.take::<4>(field).map(u32::from_le_bytes)
    }
    fn u64(&mut self, field: &str) -> Result<u64, String> {
        self.take::<8>(field).map(u64::from_le_bytes)
    }
    fn len_size(&self) -> u64 {
        if self.wide {
            8
        } else {
            4
        }
    }
    fn len(&mut self, field: &str) -> Result<u64, String> {
        if self.wide {
            self.u64(field)
        } else {
            self.u32(field).map(u64::from)
        }
    }
    /// Fails unless `need` more bytes are left in the file.
    fn fits(&self, field: &str, need: u64, what: &str) -> Result<(), String> {
        let left = self.file_len.saturating_sub(self.pos);
        if need > left {
            return Err(format!(
                "{field}: {what} need at least {need} bytes but only {left} are left in the file"
            ));
        }
        Ok(())
    }
    fn skip(&mut self, field: &str, n: u64) -> Result<(), String> {
        let got = std::io::copy(
            &mut std::io::Read::take(&mut *self.r, n),
            &mut std::io::sink(),
        )
        .map_err(|e| format!("{field}: {e}"))?;
        if got != n {
            return Err(format!("{field}: the file ends at byte {}", self.file_len));
        }
        self.pos += n;
        Ok(())
    }
    fn string(&mut self, field: &str) -> Result<String, String> {
        let n = self.len(field)?;
        self.fits(field, n, &format!("a string of {n} bytes"))?;
        // Keys and tensor names are short; longer strings are skipped, not kept.
        if n > 256 {
            self.skip(field, n)?;
            return Ok(format!("<{n}-byte name>"));
        }
        let mut b = vec![0u8; n as usize];
        self.r
            .read_exact(&mut b)
            .map_err(|e| format!("{field}: {e}"))?;
        self.pos += n;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    /// Walks one value of type `ty`; returns integers (for `general.alignment`).
    fn value(&mut self, key: &str, ty: u32, depth: u32) -> Result<Option<u64>, String> {
        let field = format!("metadata `{key}`");
        match ty {
            0 | 7 => Ok(Some(self.take::<1>(&field)?[0] as u64)),
            1 => Ok(Some(self.take::<1>(&field)?[0] as i8 as i64 as u64)),
            2 => Ok(Some(u16::from_le_bytes(self.take::<2>(&field)?) as u64)),
            3 => Ok(Some(
                i16::from_le_bytes(self.take::<2>(&field)?) as i64 as u64
            )),
            4 => Ok(Some(self.u32(&field)? as u64)),
            5 => Ok(Some(
                i32::from_le_bytes(self.take::<4>(&field)?) as i64 as u64
            )),
            6 => self.take::<4>(&field).map(|_| None),
            12 => self.take::<8>(&field).map(|_| None),
            10 | 11 => Ok(Some(self.u64(&field)?)),
            8 => {
                let n = self.len(&field)?;
                self.fits(&field, n, &format!("a string of {n} bytes"))?;
                self.skip(&field, n).map(|_| None)
            }
            9 => {
                if depth >= GGUF_MAX_ARRAY_DEPTH {
                    return Err(format!(
                        "{field}: arrays nested more than {GGUF_MAX_ARRAY_DEPTH} deep"
                    ));
                }
                let et = self.u32(&field)?;
                let n = self.len(&field)?;
                self.elements = self.elements.saturating_add(n);
                if self.elements > GGUF_MAX_METADATA_ELEMENTS {
                    return Err(format!(
                        "{field}: an array of {n} elements brings the metadata past {GGUF_MAX_METADATA_ELEMENTS} array elements in all"
                    ));
                }
                let min = match et {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 => self.len_size(),
                    9 => 4 + self.len_size(),
                    _ => 8,
                };
                self.fits(
                    &field,
                    n.saturating_mul(min),
                    &format!("an array of {n} elements"),
                )?;
                for _ in 0..n {
                    self.value(key, et, depth + 1)?;
                }
                Ok(None)
            }
            t => Err(format!("{field}: unknown value type {t}")),
        }
    }
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
