//! The `sentinel` binary: parses flags and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: decoding, folding and the HTTP receivers
/// allocate many small, short-lived values (see `sentinel bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (`include/mimalloc.h`, the same
/// position in v2 and v3); `tests::purge_delay_option_is_the_one_set` checks it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays mapped before mimalloc returns it to the OS, in ms (like
/// jemalloc's 10 s dirty-page decay; mimalloc's own default is 1 s). A rebuild frees and
/// allocates a batch's worth of memory every few milliseconds; with 10 s, `sentinel bench
/// projections` took 29–40% fewer page faults over a 10k+100k run and 70% fewer at 1M,
/// while its wall time moved within the machine's noise (README, P3). An idle process
/// still returns its memory after this delay. `MIMALLOC_PURGE_DELAY` in the environment
/// overrides it.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`] unless the environment sets it.
#[allow(unsafe_code)]
fn configure_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator; mimalloc reads it whenever it
        // schedules a purge, from any thread.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

fn main() -> ExitCode {
    configure_allocator();
    let cli = sentinel::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(sentinel::cli::run(cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option at [`MI_OPTION_PURGE_DELAY`] starts at mimalloc v3's purge-delay default
    /// (1000 ms; no other option has that default), and takes what is set.
    #[test]
    #[allow(unsafe_code)]
    fn purge_delay_option_is_the_one_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads and sets one integer option.
        unsafe {
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            configure_allocator();
            assert_eq!(
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                PURGE_DELAY_MS
            );
        }
    }
}
