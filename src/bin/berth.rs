//! `berth`: the admin command.

fn main() -> std::process::ExitCode {
    berth::cli::main()
}
