//! Engine speed: simulated LLM calls per wall-clock second with the `fixed` strategy.
//!
//! `cargo bench -p orchbench-benches --bench engine`. The README's figures come from here and from
//! `orchbench run million` (1,000,000 calls).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sim::{RunOptions, Scenario};

fn scenario(files: u32, chunks: u32, tpm: Option<u64>) -> Scenario {
    let limits = tpm.map(|t| format!("tpm = {t}\n")).unwrap_or_default();
    Scenario::parse(
        &format!(
            r#"
name = "bench"
seed = 1
[workload]
files = {files}
users = 10
chunks_per_file = {{ dist = "fixed", value = {chunks} }}
prompt_tokens = {{ dist = "uniform", min = 500, max = 1500 }}
completion_tokens = {{ dist = "fixed", value = 100 }}
max_tokens = 200
[provider]
{limits}latency = {{ base_ms = 300, per_output_token_ms = 5, sigma = 0.2 }}
[params]
max-parallelism = 100
[strategies.fixed]
max_attempts = 1000
"#
        ),
        "bench",
    )
    .expect("the bench scenario is valid")
}

fn engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    for (name, s) in [
        ("fixed-100k-calls-unthrottled", scenario(2_000, 50, None)),
        ("fixed-20k-chunks-tpm-bound", scenario(400, 50, Some(2_000_000))),
    ] {
        let fixed = strategies::build("fixed", &s).expect("fixed exists");
        // Throughput counts LLM calls (429s included), measured once: runs are deterministic.
        let calls = strategies::simulate(fixed.as_ref(), &s, &RunOptions::default())
            .expect("runs")
            .summary
            .llm_requests;
        println!("{name}: {calls} LLM calls per run");
        g.throughput(Throughput::Elements(calls));
        g.bench_function(name, |b| {
            b.iter(|| strategies::simulate(fixed.as_ref(), &s, &RunOptions::default()).expect("runs"))
        });
    }
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
