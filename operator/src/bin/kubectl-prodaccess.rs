//! `kubectl prodaccess`: the command line for people who need production access. Everything
//! lives in [`prodaccess::plugin`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    prodaccess::plugin::main().await
}
