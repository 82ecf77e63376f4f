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

/// jemalloc for every allocation, Rust's and RocksDB's C++ alike (it replaces `malloc` for the
/// whole process). glibc's allocator spent a third of a busy server's time in malloc and free,
/// waiting on its arena locks; mimalloc, used before, kept what a community's busiest seconds
/// had scattered (190 MiB resident at the end of `hearth-bench community` against 140–147 with
/// jemalloc). jemalloc's background thread returns freed pages to the system off the request
/// path.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`MALLOC_CONF` in the environment overrides them):
/// one arena for every thread (each arena keeps its own free pages; the threads' caches take
/// most allocations without the arena's lock, and the send throughput was the same with two),
/// and dirty pages returned after about 100 ms by the background thread instead of 10 s, so a
/// burst's memory goes back while the server goes on.
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: &[u8; 52] = b"background_thread:true,narenas:1,dirty_decay_ms:100\0";

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

/// Transparent huge pages are off for the process: where the system gives them to every
/// mapping (`enabled` = `always`), each first touch of the allocator's arenas would make a whole
/// 2 MiB page resident (with `madvise`, Debian's default, mimalloc's `MADV_HUGEPAGE` arenas made
/// 10 MiB of the idle server's 43).
fn disable_huge_pages() {
    // SAFETY: prctl only changes the process's memory-management parameters.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

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
    disable_huge_pages();
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
    /// Reads one of jemalloc's settings by its `mallctl` name.
    fn jemalloc_setting<T: Default>(name: &std::ffi::CStr) -> T {
        let mut value = T::default();
        let mut size = std::mem::size_of::<T>();
        // SAFETY: value and size describe a buffer of the setting's type.
        let status = unsafe { tikv_jemalloc_sys::mallctl(name.as_ptr(), (&raw mut value).cast(), &mut size, std::ptr::null_mut(), 0) };
        assert_eq!(status, 0, "mallctl {name:?}");
        value
    }

    /// The options written into the binary are the ones jemalloc runs with.
    #[test]
    fn jemalloc_reads_the_embedded_options() {
        if std::env::var_os("MALLOC_CONF").is_some() {
            return;
        }
        assert!(jemalloc_setting::<bool>(c"opt.background_thread"));
        assert_eq!(jemalloc_setting::<u32>(c"opt.narenas"), 1);
        assert_eq!(jemalloc_setting::<isize>(c"opt.dirty_decay_ms"), 100);
    }
}
