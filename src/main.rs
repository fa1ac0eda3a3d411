//! The `imgate` binary: parse the command line, then hand over to the library.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::Parser;
use imgate::cli::{Cli, Command, LogFormat};
use imgate::config::Config;

/// mimalloc rather than glibc's malloc: the node makes and frees many small
/// values per request (typed IMAP responses, JSON records), where glibc
/// spent a third of an IMAP listing coalescing free chunks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process. mimalloc asks for
/// them on its arenas, and a page it takes back from the free pool is then
/// faulted in as 2 MiB the kernel must zero: under SMTP ingest a quarter of
/// the node's CPU time went to zeroing pages (bench/smtp_ingest.sh).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("imgate: could not turn transparent huge pages off: {e}");
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => match imgate::cli::dns::signers(&c) {
                Ok(keys) => {
                    let keys = keys.all().count();
                    println!(
                        "{}: ok ({} domain(s), {} user(s), {keys} DKIM key(s))",
                        c.source,
                        c.domains.len(),
                        c.users.len()
                    );
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{}: {e}", c.source);
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => {
                eprint!("{e}");
                return ExitCode::FAILURE;
            }
        },
        Command::HashPassword => {
            let password = if std::io::stdin().is_terminal() {
                rpassword::prompt_password("password: ").map_err(anyhow::Error::from)
            } else {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map(|_| s.trim_end_matches(['\r', '\n']).to_string())
                    .map_err(Into::into)
            };
            password.map(|p| println!("{}", imgate::directory::hash_password(&p)))
        }
        Command::Serve { config, log_format } => {
            let loaded = match &config {
                Some(path) => Config::load(path),
                None => Ok(Config::embedded()),
            };
            match loaded {
                Ok(c) => {
                    init_logging(&c.log_level, log_format);
                    runtime.block_on(imgate::node::run(c, config))
                }
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        other => runtime.block_on(imgate::cli::run_client(other)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
