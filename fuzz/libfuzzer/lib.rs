//! Nothing: this crate exists to build libfuzzer-sys's libfuzzer.a (see Cargo.toml).
