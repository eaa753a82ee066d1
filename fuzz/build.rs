//! Links the libFuzzer runtime that scripts/fuzz.sh built (fuzz/libfuzzer/), found
//! through TRSR_LIBFUZZER_DIR: it holds libfuzzer.a, which brings `main`.
fn main() {
    println!("cargo:rerun-if-env-changed=TRSR_LIBFUZZER_DIR");
    match std::env::var("TRSR_LIBFUZZER_DIR") {
        Ok(dir) => {
            println!("cargo:rustc-link-search=native={dir}");
            println!("cargo:rustc-link-lib=static=fuzzer");
            println!("cargo:rustc-link-lib=stdc++");
        }
        Err(_) => {
            println!("cargo:warning=TRSR_LIBFUZZER_DIR is not set: build through scripts/fuzz.sh")
        }
    }
}
