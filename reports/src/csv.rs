//! `timeseries.csv`: one row per strategy and second.

use std::fmt::Write;

use sim::ReportFile;

/// The header of `timeseries.csv`.
pub const HEADER: &str =
    "strategy,mode,second,requests,throttled,errors,tokens,in_flight_max,chunks_validated,files_done,concurrency_limit";

/// The CSV text (strategy names are plain identifiers, so no quoting is needed).
pub fn timeseries(report: &ReportFile) -> String {
    let rows: usize = report.runs.iter().map(|r| r.timeseries.len()).sum();
    let mut out = String::with_capacity(64 * (rows + 1));
    out.push_str(HEADER);
    out.push('\n');
    for run in &report.runs {
        let mode = match run.mode {
            sim::Mode::Simulated => "simulated",
            sim::Mode::Live => "live",
        };
        for r in &run.timeseries {
            let limit = r.concurrency_limit.map(|l| l.to_string()).unwrap_or_default();
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{}",
                run.strategy,
                mode,
                r.second,
                r.requests,
                r.throttled,
                r.errors,
                r.tokens,
                r.in_flight_max,
                r.chunks_validated,
                r.files_done,
                limit
            )
            .expect("writing to a String cannot fail");
        }
    }
    out
}
