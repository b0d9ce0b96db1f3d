//! The `sentinel` binary: parses flags and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = sentinel::cli::Cli::parse();
    sentinel::cli::run(cli).await
}
