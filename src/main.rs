//! Hearth: a Matrix homeserver for small groups. One binary: `hearth serve` runs the server,
//! `hearth admin …` administers it (running or stopped).

mod admin;
mod api;
mod config;
mod error;
mod http_server;
mod server;
mod service;
mod store;
mod tls;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// mimalloc for every Rust allocation: under load, glibc's allocator spent a third of the
/// server's time in malloc and free, much of it waiting on its arena locks when a task freed
/// memory another worker thread had allocated.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "hearth", version, about = "A Matrix homeserver for small groups")]
struct Cli {
    /// Configuration file (TOML); without it the embedded defaults apply. Environment
    /// variables HEARTH_<KEY> override both.
    #[arg(long, global = true, env = "HEARTH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver.
    Serve,
    /// Administer the server: through its admin socket while it runs, on its store otherwise.
    Admin {
        /// Print machine-readable JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// List every route the HTTP API serves, as `METHOD path`, one a line.
    Routes,
}

/// Keeps glibc's malloc, which serves RocksDB's C++ allocations (Rust's go to mimalloc), from
/// holding on to freed memory: blocks of 1 MiB and more (RocksDB's memtable arenas) are always
/// mapped and unmapped on their own instead of the threshold rising after the first free, and
/// two arenas serve every thread. Without it a server that hashed a few hundred passwords (when
/// glibc served Rust too) kept ~200 MiB more resident for good.
///
/// mimalloc likewise returns freed pages after 10 ms rather than a second: 75–78 MiB resident
/// instead of 104 with 100 long polls waiting, 69–72 instead of 75 after 10,000 messages, at the
/// same send throughput (`scripts/bench memory` and `messages`, measured with 0 ms). Not at
/// once: a request that allocates much (a page of `/messages`) then faulted freshly zeroed pages
/// back in, a quarter of its time under perf; 10 ms keeps the pages between the requests of a
/// busy server and returns them when it goes quiet. `MIMALLOC_PURGE_DELAY` (milliseconds) in the
/// environment is left as mimalloc read it.
///
/// Transparent huge pages are off for the process: where the system gives them to every
/// mapping (`enabled` = `always`), each first touch of mimalloc's arenas or glibc's heap would
/// make a whole 2 MiB page resident. mimalloc is built not to ask for them itself (its `no_thp`
/// feature: with `madvise`, Debian's default, its `MADV_HUGEPAGE` arenas made 10 MiB of the idle
/// server's 43, 13 MiB more after 10,000 messages).
fn limit_malloc_retention() {
    // SAFETY: mallopt, mi_option_set and prctl only change allocator and memory-management
    // parameters; they are called before any other thread exists.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

/// How long mimalloc keeps freed pages before returning them to the OS.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// mimalloc 3's `mi_option_purge_delay` (`mi_option_t` in its mimalloc.h; the Rust bindings
/// name only the older options). The unit test below checks the number against the default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Raises the soft limit of open files to the hard one: every long-polling client holds a
/// connection, and a community of a thousand members outgrows the usual soft limit of 1,024.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: both calls get a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_retention();
    raise_open_files_limit();
    let cli = Cli::parse();
    // Outgoing TLS (URL previews) uses ring; installing it fails only if one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("hearth: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hearth: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve => {
            init_logging(&config);
            match runtime.block_on(server::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    tracing::error!("{message}");
                    eprintln!("hearth: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Admin { json, command } => runtime.block_on(admin::cli::run(config, command, json)),
        Command::Routes => {
            for route in api::router::routes().list {
                println!("{route}");
            }
            ExitCode::SUCCESS
        }
    }
}

fn init_logging(config: &Config) {
    // The level was validated when the configuration loaded.
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log.format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::MI_OPTION_PURGE_DELAY;

    /// The option number is that of mimalloc's header: its documented default reads back.
    #[test]
    fn mimalloc_option_number_names_the_purge_delay() {
        // SAFETY: reading an option has no preconditions.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, 1000);
    }
}
