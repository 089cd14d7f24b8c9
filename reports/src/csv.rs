//! `timeseries.csv`: one row per strategy and second.

use std::fmt::Write;

use sim::ReportFile;

/// The fixed columns of `timeseries.csv`; one `gauge:NAME` column per strategy gauge follows
/// (empty where a run has no such gauge).
pub const HEADER: &str = "strategy,mode,second,requests,throttled,errors,tokens,charged,in_flight_max,chunks_validated,files_done,concurrency_limit";

/// The CSV text (strategy names are plain identifiers, so no quoting is needed; gauge names
/// are quoted when they need it).
pub fn timeseries(report: &ReportFile) -> String {
    let rows: usize = report.runs.iter().map(|r| r.timeseries.len()).sum();
    let gauges: Vec<&str> = report
        .runs
        .iter()
        .flat_map(|r| r.timeseries.iter().flat_map(|row| row.gauges.keys().map(|k| &**k)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = String::with_capacity(64 * (rows + 1));
    out.push_str(HEADER);
    for g in &gauges {
        out.push(',');
        out.push_str(&quote(&format!("gauge:{g}")));
    }
    out.push('\n');
    for run in &report.runs {
        let mode = match run.mode {
            sim::Mode::Simulated => "simulated",
            sim::Mode::Live => "live",
        };
        for r in &run.timeseries {
            let limit = r.concurrency_limit.map(|l| l.to_string()).unwrap_or_default();
            write!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                run.strategy,
                mode,
                r.second,
                r.requests,
                r.throttled,
                r.errors,
                r.tokens,
                r.charged,
                r.in_flight_max,
                r.chunks_validated,
                r.files_done,
                limit
            )
            .expect("writing to a String cannot fail");
            for g in &gauges {
                out.push(',');
                if let Some(v) = r.gauges.get(*g) {
                    write!(out, "{v}").expect("writing to a String cannot fail");
                }
            }
            out.push('\n');
        }
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}
