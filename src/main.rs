use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = orchbench::Cli::parse();
    match orchbench::execute(cli, &mut std::io::stdout().lock()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
