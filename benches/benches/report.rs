//! Writing a report folder (JSON, CSV, Markdown, HTML with every chart) for five strategies and an
//! hour of per-second series. Target: under one second.

use criterion::{Criterion, criterion_group, criterion_main};
use sim::report::{ReportFile, SCHEMA_VERSION};
use sim::{RunOptions, Scenario};

fn hour_long_report() -> ReportFile {
    let s = Scenario::parse(
        r#"
name = "hour"
[workload]
files = 600
users = 6
chunks_per_file = { dist = "uniform", min = 5, max = 30 }
prompt_tokens = { dist = "normal", mean = 1200, stddev = 300 }
completion_tokens = { dist = "fixed", value = 150 }
max_tokens = 300
arrival = { kind = "steady", per_minute = 10 }
[provider]
tpm = 200000
rpm = 500
error_rate = 0.01
[params]
max-parallelism = 6
[[timeline]]
at = "20m"
cancel = { user = "user-2" }
[[timeline]]
at = "30m"
outage = { for = "2m" }
"#,
        "bench",
    )
    .expect("valid");
    let fixed = strategies::build("fixed", &s).expect("fixed");
    let run = strategies::simulate(fixed.as_ref(), &s, &RunOptions::default()).expect("runs");
    assert!(
        run.timeseries.len() >= 3600,
        "an hour of series: {} s",
        run.timeseries.len()
    );
    let runs = ["fixed", "stepfn", "sqs", "adaptive", "cookbook"]
        .iter()
        .map(|n| {
            let mut r = run.clone();
            r.strategy = (*n).to_owned();
            r
        })
        .collect();
    ReportFile {
        schema_version: SCHEMA_VERSION,
        scenario: sim::ScenarioInfo::of(&s),
        runs,
        sweep: None,
    }
}

fn report(c: &mut Criterion) {
    let r = hour_long_report();
    let dir = std::env::temp_dir().join(format!("orchbench-bench-report-{}", std::process::id()));
    let mut g = c.benchmark_group("report");
    g.sample_size(10);
    g.bench_function("write-dir-5-strategies-1h", |b| {
        b.iter(|| reports::write_dir(&dir, &r).expect("writes"))
    });
    g.bench_function("html-only-5-strategies-1h", |b| {
        b.iter(|| reports::html::render(&r).expect("renders"))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, report);
criterion_main!(benches);
