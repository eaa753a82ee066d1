//! Inference on candle: model loading, tokenizer, generation, yes/no scoring. Only this module knows candle.

pub mod chat;
pub mod error;
pub mod fetch;
pub mod source;
pub mod tokenizer;

pub use error::LlmError;
