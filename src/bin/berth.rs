//! `berth`: the admin command.

fn main() -> std::process::ExitCode {
    if let Some(code) = berth::templates::isolated::serve_if_asked() {
        return code;
    }
    berth::cli::main()
}
