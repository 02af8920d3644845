//! `kubectl prodaccess`: the command line for people who need access (being built).

fn main() -> std::process::ExitCode {
    eprintln!("error: kubectl-prodaccess is not implemented yet");
    std::process::ExitCode::FAILURE
}
