//! The `sentinel` binary: parses flags and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: decoding, folding and the HTTP receivers
/// allocate many small, short-lived values (see `sentinel bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = sentinel::cli::Cli::parse();
    sentinel::cli::run(cli).await
}
