//! Inference on candle: model loading, tokenizer, generation, yes/no scoring. Only this module knows candle.

pub mod fetch;
