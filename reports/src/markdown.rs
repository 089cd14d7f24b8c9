//! `report.md`: the table and a short plain-language reading of it, for pasting into a design
//! document or a pull request.

use std::fmt::Write;

use sim::{ReportFile, RunReport};

use crate::charts::label;
use crate::table::secs;

/// The Markdown text.
pub fn render(report: &ReportFile) -> String {
    let s = &report.scenario;
    let mut m = String::new();
    let limit = |v: Option<u64>| v.map_or("none".to_owned(), |v| v.to_string());
    w(&mut m, format_args!("# orchbench: {}\n\n", s.name));
    if !s.description.is_empty() {
        w(&mut m, format_args!("{}\n\n", s.description));
    }
    w(
        &mut m,
        format_args!(
            "Seed {}; {} files, {} chunks, {} users; {} with TPM {} and RPM {} ({} limits).\n\n",
            s.seed,
            s.files,
            s.chunks_total,
            s.users,
            s.model,
            limit(s.tpm),
            limit(s.rpm),
            s.profile
        ),
    );
    m.push_str("| strategy | done | makespan | efficiency | completed / failed / cancelled / rejected | requests | 429s | errors | wasted tokens | tokens/min | p99 call | cost |\n");
    m.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &report.runs {
        let x = &r.summary;
        w(
            &mut m,
            format_args!(
                "| {} | {:.1}% | {} | {:.1}% | {} / {} / {} / {} | {} | {} | {} | {} | {:.0} | {:.0} ms | ${:.4} |\n",
                label(r),
                x.completion * 100.0,
                secs(x.makespan_s),
                x.efficiency * 100.0,
                x.files_completed,
                x.files_failed,
                x.files_cancelled,
                x.files_rejected,
                x.llm_requests,
                x.llm_throttled,
                x.llm_errors,
                x.tokens_wasted,
                x.throughput_tokens_per_min,
                x.latency_ms.p99,
                x.cost.total_usd
            ),
        );
    }
    if let Some((head, body)) = crate::table::figures(report) {
        m.push_str("\n## Strategy figures\n\n");
        w(&mut m, format_args!("| {} |\n", head.join(" | ")));
        w(
            &mut m,
            format_args!("|---|{}\n", "---:|".repeat(head.len().saturating_sub(1))),
        );
        for (name, cells) in body {
            w(&mut m, format_args!("| {name} | {} |\n", cells.join(" | ")));
        }
    }
    m.push_str("\n## Reading\n\n");
    for line in reading(report) {
        w(&mut m, format_args!("- {line}\n"));
    }
    m
}

fn w(m: &mut String, args: std::fmt::Arguments<'_>) {
    m.write_fmt(args).expect("writing to a String cannot fail");
}

/// For each live run whose transport overhead distorts its calls by more than 1%, a sentence
/// saying by how much and what to do.
pub fn transport_warnings(report: &ReportFile) -> Vec<String> {
    report
        .runs
        .iter()
        .filter_map(|r| {
            let t = r.summary.transport?;
            (t.distortion > sim::report::Transport::WARN).then(|| {
                format!(
                    "**{}**: the transport added {:.1} ms per call (p50; p99 {:.1} ms, real time), which at time scale {} stretches the median call by {:.1}% of scenario time: its live figures are distorted against the simulation's; lower --time-scale.",
                    label(r),
                    t.p50_ms,
                    t.p99_ms,
                    t.time_scale,
                    t.distortion * 100.0
                )
            })
        })
        .collect()
}

/// For a sweep, one line per strategy whose runs came out identical at every value: the swept
/// parameter changed nothing for it (it does not read the parameter, or it never binds), which
/// a table of equal rows would otherwise leave the reader to guess.
pub fn sweep_inert(report: &ReportFile) -> Vec<String> {
    let Some(sweep) = &report.sweep else {
        return Vec::new();
    };
    let mut names: Vec<&str> = Vec::new();
    for r in &report.runs {
        if !names.contains(&r.strategy.as_str()) {
            names.push(&r.strategy);
        }
    }
    let mut out = Vec::new();
    for name in names {
        let runs: Vec<&RunReport> = report.runs.iter().filter(|r| r.strategy == name).collect();
        let key = |r: &&RunReport| {
            let x = &r.summary;
            (
                x.results_digest.clone(),
                x.makespan_s.to_bits(),
                x.llm_requests,
                x.llm_throttled,
                x.tokens_billed,
            )
        };
        if runs.len() > 1 && runs.iter().all(|r| key(r) == key(&runs[0])) {
            out.push(format!(
                "**{name}** did not respond to `{}`: its {} runs are identical (it does not read this parameter, or the parameter never bound).",
                sweep.param,
                runs.len()
            ));
        }
    }
    out
}

/// Plain sentences about the runs: who did the most of the work soonest, who did not finish
/// it, who wasted most, where throttling was. Completion ranks first: a run that gave up early
/// never "finishes first".
pub fn reading(report: &ReportFile) -> Vec<String> {
    let runs = &report.runs;
    let mut out = sweep_inert(report);
    let Some(first) = runs.iter().min_by(|a, b| {
        b.summary
            .completion
            .total_cmp(&a.summary.completion)
            .then(a.summary.makespan_s.total_cmp(&b.summary.makespan_s))
    }) else {
        return vec!["No runs.".into()];
    };
    let s = &first.summary;
    let verb = if runs.len() > 1 { "finished first:" } else { "took" };
    out.push(format!(
        "**{}** {verb} {} for {:.0}% of the required work ({} of {} files completed), at {:.0}% efficiency against the ideal makespan ({}).",
        label(first),
        secs(s.makespan_s),
        s.completion * 100.0,
        s.files_completed,
        s.files_total,
        s.efficiency * 100.0,
        secs(s.ideal_makespan_s)
    ));
    for r in runs {
        let x = &r.summary;
        if x.completion < 1.0 {
            out.push(format!(
                "**{}** left {:.0}% of the required work undone ({} files failed, {} rejected).",
                label(r),
                (1.0 - x.completion) * 100.0,
                x.files_failed,
                x.files_rejected
            ));
        }
    }
    for r in runs {
        let x = &r.summary;
        if let (Some(j), true) = (x.fairness, x.users.len() > 1)
            && j < 0.9
        {
            let by = |u: &&sim::report::UserFigures| u.throughput_tokens_per_min;
            let most = x.users.iter().max_by(|a, b| by(a).total_cmp(&by(b)));
            let least = x.users.iter().min_by(|a, b| by(a).total_cmp(&by(b)));
            if let (Some(most), Some(least)) = (most, least) {
                out.push(format!(
                    "**{}** served its users unevenly (Jain's index {:.2}): {} got {:.0} tokens/min while it had work, {} {:.0}.",
                    label(r),
                    j,
                    most.user,
                    most.throughput_tokens_per_min,
                    least.user,
                    least.throughput_tokens_per_min
                ));
            }
        }
    }
    if let Some(waster) = runs
        .iter()
        .filter(|r| r.summary.tokens_wasted > 0)
        .max_by_key(|r| r.summary.tokens_wasted)
    {
        let x = &waster.summary;
        let what = if runs.len() > 1 {
            "wasted the most tokens"
        } else {
            "wasted"
        };
        out.push(format!(
            "**{}** {what}: {} of {} billed tokens ({:.1}%), on work whose result was not kept.",
            label(waster),
            x.tokens_wasted,
            x.tokens_billed,
            100.0 * x.tokens_wasted as f64 / x.tokens_billed.max(1) as f64
        ));
    } else {
        out.push("No run wasted tokens: every billed answer was kept.".into());
    }
    for r in runs {
        let x = &r.summary;
        if x.llm_throttled > 0 {
            let (minute, n) = worst_minute(r);
            out.push(format!(
                "**{}** was throttled {} times ({:.0}% of its requests), most in minute {}–{} ({} 429s).",
                label(r),
                x.llm_throttled,
                100.0 * x.llm_throttled as f64 / x.llm_requests.max(1) as f64,
                minute,
                minute + 1,
                n
            ));
        }
        if x.files_failed > 0 {
            out.push(format!(
                "**{}** failed {} files: chunks ran out of attempts or hit an error no retry fixes.",
                label(r),
                x.files_failed
            ));
        }
        let m = |k: &str| x.strategy_metrics.get(k).copied();
        if let Some(deliveries) = m("deliveries") {
            // A queue-based design: what at-least-once delivery and its dead-letter queue cost.
            let n = |k: &str| m(k).unwrap_or(0.0);
            out.push(format!(
                "**{}** delivered {:.0} messages: {:.0} redeliveries (after a 429, a timeout or a crash), {:.0} duplicate deliveries, {:.0} duplicate LLM calls ({:.0} tokens not kept); {:.0} messages left in the dead-letter queue.",
                label(r),
                deliveries,
                n("redeliveries"),
                n("duplicate_deliveries"),
                n("duplicate_llm_calls"),
                n("duplicate_llm_tokens"),
                n("dlq_messages_at_end"),
            ));
            if n("crash_stranded_messages") > 0.0 {
                out.push(format!(
                    "**{}**: a crash stranded {:.0} messages in the killed consumers; they waited out their visibility timeout, {} in all.",
                    label(r),
                    n("crash_stranded_messages"),
                    secs(n("crash_time_lost_s")),
                ));
            }
        }
        if let Some(c) = x.cancel_latency_s {
            out.push(format!(
                "**{}** stopped cancelled work within {} (p99; worst {}); the cancels met {} calls in flight.",
                label(r),
                secs(c.p99),
                secs(c.max),
                x.calls_in_flight_at_cancel
            ));
        }
        if let Some(rec) = x.recovery_s {
            out.push(format!(
                "**{}** needed {} to recover its pace after the worst disruption.",
                label(r),
                secs(rec)
            ));
        }
        if let Some(cleared) = x.backlog_cleared_s {
            // Beside the failures: failing what waited also clears a backlog.
            let failed = if x.files_failed > 0 {
                format!(
                    " (and failed {} file{})",
                    x.files_failed,
                    if x.files_failed == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            };
            out.push(format!(
                "**{}** worked off the backlog of its worst outage or crash {} after it ended{failed}.",
                label(r),
                secs(cleared)
            ));
        }
    }
    for r in runs {
        if let Some(t) = r.summary.transport {
            out.push(format!(
                "**{}** (live): the transport added {:.1} ms per call (p50; p99 {:.1} ms, real time, {} calls), {:.2}% of the median call at time scale {}{}.",
                label(r),
                t.p50_ms,
                t.p99_ms,
                t.samples,
                t.distortion * 100.0,
                t.time_scale,
                if t.distortion > sim::report::Transport::WARN {
                    ": more than 1%, so its figures are distorted against the simulation's"
                } else {
                    ""
                }
            ));
        }
    }
    if let Some(runs) = crate::table::errors_by_kind_per_run(report) {
        // Load testers' classes: a refused connection or a TLS failure is not a provider's 5xx.
        out.push(format!(
            "Errors by kind (`connect` refused or unreachable, `tls`, `timeout`, `4xx`, `5xx`, `too_large`, `broken` mid-call, `bad_response`): {}.",
            runs
        ));
    }
    if runs.iter().all(|r| r.summary.llm_throttled == 0) {
        out.push("No run was throttled: the limits never bound.".into());
    }
    out
}

/// The minute with the most 429s, and how many.
fn worst_minute(r: &RunReport) -> (u64, u64) {
    let mut per_min = std::collections::BTreeMap::<u64, u64>::new();
    for row in &r.timeseries {
        *per_min.entry(row.second / 60).or_default() += u64::from(row.throttled);
    }
    per_min
        .into_iter()
        .max_by_key(|&(m, n)| (n, std::cmp::Reverse(m)))
        .unwrap_or((0, 0))
}
