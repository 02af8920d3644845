//! `prodaccess-operator`: parses arguments and hands over to the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    prodaccess::cli::main().await
}
