//! Typed reads of the tokenizer's GGUF metadata (`tokenizer.ggml.*`): every wrong type
//! or out-of-range value is an [`LlmError`] naming the key.

use candle_core::quantized::gguf_file;

use super::tok_err;
use crate::llm::LlmError;

pub(super) fn meta<'a>(content: &'a gguf_file::Content, key: &str) -> Option<&'a gguf_file::Value> {
    content.metadata.get(key)
}

pub(super) fn meta_str<'a>(
    content: &'a gguf_file::Content,
    key: &str,
) -> Result<Option<&'a str>, LlmError> {
    match meta(content, key) {
        None => Ok(None),
        Some(gguf_file::Value::String(s)) => Ok(Some(s.as_str())),
        Some(v) => Err(tok_err(format!(
            "GGUF metadata `{key}`: expected a string, found {:?}",
            v.value_type()
        ))),
    }
}

pub(super) fn value_as_i64(v: &gguf_file::Value) -> Option<i64> {
    use gguf_file::Value as V;
    Some(match v {
        V::U8(x) => i64::from(*x),
        V::I8(x) => i64::from(*x),
        V::U16(x) => i64::from(*x),
        V::I16(x) => i64::from(*x),
        V::U32(x) => i64::from(*x),
        V::I32(x) => i64::from(*x),
        V::U64(x) => i64::try_from(*x).ok()?,
        V::I64(x) => *x,
        _ => return None,
    })
}

pub(super) fn meta_id(
    content: &gguf_file::Content,
    key: &str,
    vocab_size: usize,
) -> Result<Option<u32>, LlmError> {
    let Some(v) = meta(content, key) else {
        return Ok(None);
    };
    let n = value_as_i64(v).ok_or_else(|| {
        tok_err(format!(
            "GGUF metadata `{key}`: expected a token id, found {:?}",
            v.value_type()
        ))
    })?;
    // llama.cpp writes -1 (as u32::MAX or i32 -1) for "none".
    if n < 0 || n == i64::from(u32::MAX) {
        return Ok(None);
    }
    if n as u64 >= vocab_size as u64 {
        return Err(tok_err(format!(
            "GGUF metadata `{key}` = {n} is outside the vocabulary (size {vocab_size})"
        )));
    }
    Ok(Some(n as u32))
}

pub(super) fn meta_bool(content: &gguf_file::Content, key: &str) -> Result<Option<bool>, LlmError> {
    match meta(content, key) {
        None => Ok(None),
        Some(gguf_file::Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => match value_as_i64(v) {
            Some(n) => Ok(Some(n != 0)),
            None => Err(tok_err(format!(
                "GGUF metadata `{key}`: expected a bool, found {:?}",
                v.value_type()
            ))),
        },
    }
}

pub(super) fn meta_array<'a>(
    content: &'a gguf_file::Content,
    key: &str,
) -> Result<Option<&'a Vec<gguf_file::Value>>, LlmError> {
    match meta(content, key) {
        None => Ok(None),
        Some(gguf_file::Value::Array(a)) => Ok(Some(a)),
        Some(v) => Err(tok_err(format!(
            "GGUF metadata `{key}`: expected an array, found {:?}",
            v.value_type()
        ))),
    }
}

pub(super) fn meta_strings(
    content: &gguf_file::Content,
    key: &str,
) -> Result<Option<Vec<String>>, LlmError> {
    let Some(arr) = meta_array(content, key)? else {
        return Ok(None);
    };
    arr.iter()
        .enumerate()
        .map(|(i, v)| match v {
            gguf_file::Value::String(s) => Ok(s.clone()),
            other => Err(tok_err(format!(
                "GGUF metadata `{key}`[{i}]: expected a string, found {:?}",
                other.value_type()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

pub(super) fn meta_i32s(
    content: &gguf_file::Content,
    key: &str,
) -> Result<Option<Vec<i32>>, LlmError> {
    let Some(arr) = meta_array(content, key)? else {
        return Ok(None);
    };
    arr.iter()
        .enumerate()
        .map(|(i, v)| {
            value_as_i64(v)
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| {
                    tok_err(format!(
                        "GGUF metadata `{key}`[{i}]: expected an integer, found {:?}",
                        v.value_type()
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

pub(super) fn meta_f32s(
    content: &gguf_file::Content,
    key: &str,
) -> Result<Option<Vec<f32>>, LlmError> {
    let Some(arr) = meta_array(content, key)? else {
        return Ok(None);
    };
    arr.iter()
        .enumerate()
        .map(|(i, v)| match v {
            gguf_file::Value::F32(x) => Ok(*x),
            gguf_file::Value::F64(x) => Ok(*x as f32),
            other => Err(tok_err(format!(
                "GGUF metadata `{key}`[{i}]: expected a float, found {:?}",
                other.value_type()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

// ---------------------------------------------------------------------------------------------
// Byte-level (GPT-2) byte <-> char table
