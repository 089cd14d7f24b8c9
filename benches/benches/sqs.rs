//! The SQS choreography's speed: simulated LLM calls per wall-clock second of the `sqs` strategy
//! on the shipped `baseline` scenario (200 files, 3,429 chunks, 429s and dead letters included).
//!
//! `cargo bench -p orchbench-benches --bench sqs`. The README's figure comes from here; the
//! memory figure from `orchbench run million -s sqs` under `/usr/bin/time -v`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sim::{RunOptions, Scenario};

fn sqs(c: &mut Criterion) {
    let s = Scenario::parse(include_str!("../../scenarios/baseline.toml"), "baseline")
        .expect("the shipped baseline is valid");
    let sqs = strategies::build("sqs", &s).expect("sqs exists");
    // Throughput counts LLM calls (429s included), measured once: runs are deterministic.
    let calls = strategies::simulate(sqs.as_ref(), &s, &RunOptions::default())
        .expect("runs")
        .summary
        .llm_requests;
    println!("sqs-baseline: {calls} LLM calls per run");
    let mut g = c.benchmark_group("sqs");
    g.sample_size(20);
    g.throughput(Throughput::Elements(calls));
    g.bench_function("baseline", |b| {
        b.iter(|| strategies::simulate(sqs.as_ref(), &s, &RunOptions::default()).expect("runs"))
    });
    g.finish();
}

criterion_group!(benches, sqs);
criterion_main!(benches);
