//! Writes a copy of a GGUF with its 2-D weight matrices in another quantized type, for
//! benchmarking and checking the engine on types a download would otherwise be needed for.
//!
//! `cargo run --example requantize -- IN.gguf OUT.gguf TYPE [DOWN_TYPE]`, TYPE one of
//! q4_0, q4_1, q8_0, q4k; DOWN_TYPE (default TYPE) is used for `ffn_down` (whose rows are
//! long enough for the K-quants' 256-weight blocks on small models). A matrix whose row
//! length does not fit the type's block keeps its original type. Metadata is copied as is.

use anyhow::{bail, Context};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

fn dtype(name: &str) -> anyhow::Result<GgmlDType> {
    Ok(match name {
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "q8_0" => GgmlDType::Q8_0,
        "q4k" => GgmlDType::Q4K,
        _ => bail!("unknown type {name}: use q4_0, q4_1, q8_0 or q4k"),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, ty, rest @ ..] = args.as_slice() else {
        bail!("usage: requantize IN.gguf OUT.gguf TYPE [DOWN_TYPE]");
    };
    let to = dtype(ty)?;
    let down = rest.first().map(|s| dtype(s)).transpose()?.unwrap_or(to);
    let mut f = std::fs::File::open(input).with_context(|| format!("open {input}"))?;
    let content = gguf_file::Content::read(&mut f).with_context(|| format!("read {input}"))?;
    let dev = Device::Cpu;
    let mut tensors = Vec::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let q = content.tensor(&mut f, name, &dev)?;
        let dims = q.shape().dims().to_vec();
        let target = if name.contains("ffn_down") { down } else { to };
        let q = if dims.len() == 2 && dims[1] % target.block_size() == 0 && q.dtype() != target {
            QTensor::quantize(&q.dequantize(&dev)?, target)?
        } else {
            q
        };
        println!("{name}: {dims:?} {:?}", q.dtype());
        tensors.push((name.clone(), q));
    }
    let md: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(output).with_context(|| format!("create {output}"))?;
    gguf_file::write(&mut out, &md, &ts)?;
    Ok(())
}
