use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = orchbench::Cli::parse();
    match orchbench::execute(cli, &mut std::io::stdout().lock()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // 2, not 1: `orchbench regress` uses 1 for "a metric regressed".
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
