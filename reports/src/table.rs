//! The comparison table printed after a run.

use sim::ReportFile;

/// A plain-text table, one row per run, columns aligned; under it, the errors by kind when any
/// run met errors.
pub fn comparison(report: &ReportFile) -> String {
    let mut out = aligned(report);
    if let Some(line) = errors_by_kind(report) {
        out.push('\n');
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The runs' errors by kind, `errors by kind: fixed 5xx 238, timeout 3; sqs connect 48`; `None`
/// when no run met an error.
pub fn errors_by_kind(report: &ReportFile) -> Option<String> {
    errors_by_kind_per_run(report).map(|runs| format!("errors by kind: {runs}"))
}

/// `fixed 5xx 238, timeout 3; sqs connect 48`: each run that met errors, its kinds and counts;
/// `None` when no run met an error.
pub fn errors_by_kind_per_run(report: &ReportFile) -> Option<String> {
    let parts: Vec<String> = report
        .runs
        .iter()
        .filter(|r| !r.summary.errors_by_kind.is_empty())
        .map(|r| {
            let kinds: Vec<String> = r
                .summary
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!("{} {}", crate::charts::label(r), kinds.join(", "))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn aligned(report: &ReportFile) -> String {
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

/// A row of a table: its label and its cells.
pub type Row = (String, Vec<String>);

/// The strategies' own figures: one row per `strategy_metrics` name and per orchestration cost
/// unit (in US dollars), one column per run (its label); `None` when no run has any.
pub fn figures(report: &ReportFile) -> Option<(Vec<String>, Vec<Row>)> {
    use std::collections::BTreeSet;
    let metrics: BTreeSet<&String> = report
        .runs
        .iter()
        .flat_map(|r| r.summary.strategy_metrics.keys())
        .collect();
    let units: BTreeSet<sim::cost::Unit> = report
        .runs
        .iter()
        .flat_map(|r| r.summary.cost.by_unit_usd.keys().copied())
        .collect();
    if metrics.is_empty() && units.is_empty() {
        return None;
    }
    let head: Vec<String> = std::iter::once("figure".to_owned())
        .chain(report.runs.iter().map(crate::charts::label))
        .collect();
    let mut body = Vec::new();
    for m in metrics {
        let cells = report
            .runs
            .iter()
            .map(|r| {
                r.summary
                    .strategy_metrics
                    .get(m)
                    .map_or(String::new(), |v| trim_number(*v))
            })
            .collect();
        body.push((m.clone(), cells));
    }
    if !units.is_empty() {
        body.push((
            "cost: LLM tokens".to_owned(),
            report
                .runs
                .iter()
                .map(|r| format!("${:.4}", r.summary.cost.llm_usd))
                .collect(),
        ));
    }
    for u in units {
        let name = serde_json::to_value(u)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let cells = report
            .runs
            .iter()
            .map(|r| {
                r.summary
                    .cost
                    .by_unit_usd
                    .get(&u)
                    .map_or(String::new(), |v| format!("${v:.4}"))
            })
            .collect();
        body.push((format!("cost: {}", name.replace('_', " ")), cells));
    }
    Some((head, body))
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
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
                // No successful call, no completed file: no percentile (not 0 ms).
                if run.latency_histogram_ms.iter().all(|b| b.1 == 0) {
                    "–".to_owned()
                } else {
                    format!("{:.0}ms", s.latency_ms.p99)
                },
                if s.files_completed == 0 {
                    "–".to_owned()
                } else {
                    secs(s.file_latency_s.p99)
                },
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
