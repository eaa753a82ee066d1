fn main() -> std::process::ExitCode {
    // Before any thread exists: candle reads its pool size from the environment only.
    trsr::llm::par::configure_process();
    // A full disk or a file-size limit is an error naming the file, not a silent kill.
    trsr::cli::ignore_file_size_signal();
    trsr::cli::main()
}
