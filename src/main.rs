fn main() -> std::process::ExitCode {
    // Before any thread exists: candle reads its pool size from the environment only.
    trsr::llm::par::configure_process();
    trsr::cli::main()
}
