//! A model's hyper-parameters as read from its file, and the form its weights are held in.

/// Models with more parameters than this keep only the quantized weights.
pub(crate) const DENSE_MAX_PARAMS: u64 = 1_500_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
}

/// Hyper-parameters read from the model file.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub vocab: usize,
    pub context_len: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// GGUF llama weights have q/k rows permuted for the interleaved (GPT-J) rotation;
    /// Qwen and Hugging Face safetensors use the half-split (NeoX) rotation.
    pub rope_interleaved: bool,
}

impl Config {
    pub(crate) fn group(&self) -> usize {
        self.n_head / self.n_kv_head
    }
}

/// How the weights are held; reported in `ModelInfo::weight_form`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightForm {
    /// Quantized for decode plus dequantized f32 for batched work.
    QuantizedAndF32,
    /// Quantized only (large models).
    Quantized,
    /// Dense f32 only (unquantized source weights).
    F32,
}

impl WeightForm {
    pub fn describe(self) -> &'static str {
        match self {
            WeightForm::QuantizedAndF32 => "quantized (decode) + f32 (prefill, scoring)",
            WeightForm::Quantized => "quantized",
            WeightForm::F32 => "dense (unquantized: f32, f16 above 1.5B parameters)",
        }
    }
}
