//! The provider model alone: admission decisions per second, OpenAI buckets and Azure windows.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mock_llm::{ModelRequest, Profile, Provider, ProviderConfig};

fn provider(profile: Profile) -> Provider {
    Provider::new(ProviderConfig {
        tpm: std::num::NonZeroU64::new(1_000_000),
        rpm: std::num::NonZeroU64::new(10_000),
        profile,
        ..ProviderConfig::default()
    })
}

fn limiter(c: &mut Criterion) {
    let mut g = c.benchmark_group("provider-admit");
    const N: u64 = 10_000;
    g.throughput(Throughput::Elements(N));
    for (name, profile) in [("openai", Profile::Openai), ("azure", Profile::Azure)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || provider(profile),
                |mut p| {
                    let mut admitted = 0u32;
                    for i in 0..N {
                        let req = ModelRequest {
                            prompt_tokens: 800,
                            max_tokens: 200,
                            completion_tokens: 100,
                            key: i,
                            attempt: Some(0),
                        };
                        if matches!(
                            p.admit(Duration::from_millis(i * 3), &req),
                            mock_llm::Admission::Admitted(_)
                        ) {
                            admitted += 1;
                        }
                    }
                    admitted
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, limiter);
criterion_main!(benches);
