fn main() -> std::process::ExitCode {
    trsr::cli::main()
}
