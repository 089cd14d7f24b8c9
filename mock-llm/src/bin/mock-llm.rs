//! `mock-llm`: an OpenAI-compatible server that really enforces TPM/RPM. The flags live in
//! [`mock_llm::server::cli`], shared with `orchbench mock-llm`.

use std::process::ExitCode;

use clap::Parser;

/// An OpenAI-compatible chat-completions server that enforces TPM/RPM limits the way OpenAI does
/// (continuously refilling buckets, x-ratelimit-* headers, exact retry-after) or Azure does, with
/// configurable latency and faults. Stops cleanly on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "mock-llm", version)]
struct Cli {
    #[command(flatten)]
    args: mock_llm::server::cli::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match mock_llm::server::cli::run_blocking(&cli.args, &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes, as `anyhow`'s `{:#}` prints them.
            let mut message = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
