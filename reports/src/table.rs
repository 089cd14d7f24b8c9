//! The comparison table printed after a run.

use sim::ReportFile;

/// A plain-text table, one row per run, columns aligned.
pub fn comparison(report: &ReportFile) -> String {
    let (head, body) = rows(report);
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    rows.extend(
        body.into_iter()
            .map(|(label, cells)| std::iter::once(label).chain(cells).collect()),
    );
    let widths: Vec<usize> = (0..head.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
            out.push('\n');
        }
    }
    out
}

/// The comparison's column headers, and per run its label and the other cells: the one
/// definition of the table that the terminal and the HTML page both show.
pub fn rows(report: &ReportFile) -> (Vec<&'static str>, Vec<(String, Vec<String>)>) {
    let head = vec![
        "strategy",
        "done",
        "makespan",
        "ideal",
        "effic.",
        "files ok/fail/cancel/rej",
        "fair",
        "requests",
        "429s",
        "errors",
        "retries",
        "tok/min",
        "wasted tok",
        "p99 call",
        "p99 file",
        "cost",
    ];
    let body = report
        .runs
        .iter()
        .map(|run| {
            let s = &run.summary;
            let cells = vec![
                format!("{:.1}%", s.completion * 100.0),
                secs(s.makespan_s),
                secs(s.ideal_makespan_s),
                format!("{:.1}%", s.efficiency * 100.0),
                format!(
                    "{}/{}/{}/{}",
                    s.files_completed, s.files_failed, s.files_cancelled, s.files_rejected
                ),
                s.fairness.map_or("–".to_owned(), |j| format!("{j:.2}")),
                s.llm_requests.to_string(),
                s.llm_throttled.to_string(),
                s.llm_errors.to_string(),
                s.retries.to_string(),
                format!("{:.0}", s.throughput_tokens_per_min),
                s.tokens_wasted.to_string(),
                format!("{:.0}ms", s.latency_ms.p99),
                secs(s.file_latency_s.p99),
                format!("${:.4}", s.cost.total_usd),
            ];
            (crate::charts::label(run), cells)
        })
        .collect();
    (head, body)
}

/// Seconds in a readable unit: `950ms`, `42.3s`, `12m05s`, `2h03m`.
pub fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}
