use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = orchbench::Cli::parse();
    // Not `stdout().lock()` for the whole command: the live dashboard draws on stdout from its
    // own thread.
    match orchbench::execute(cli, &mut std::io::stdout()) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`orchbench run --json | head`): nothing left to say to it.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // 2, not 1: `orchbench regress` uses 1 for "a metric regressed".
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
