//! The server's command line, shared by the `mock-llm` binary and `orchbench mock-llm`.

use std::num::NonZeroU64;

use crate::MockError;
use crate::config::{LatencyConfig, Millis, Probability, Profile, ProviderConfig, ServerStatus, Sigma, TpmCharge};
use crate::server::{ServerConfig, Tokenizer};

/// An OpenAI-compatible chat-completions server that enforces TPM/RPM limits the way OpenAI does
/// (continuously refilling buckets, x-ratelimit-* headers, exact retry-after) or Azure does, with
/// configurable latency and faults.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Take the provider settings from a scenario file's [provider] table (flags below override).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<std::path::PathBuf>,
    /// Model name served (requests for another model get 404).
    #[arg(long)]
    pub model: Option<String>,
    /// Tokens-per-minute limit.
    #[arg(long)]
    pub tpm: Option<NonZeroU64>,
    /// Requests-per-minute limit (azure: derived from --tpm unless given).
    #[arg(long)]
    pub rpm: Option<NonZeroU64>,
    /// Limit profile.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// TPM charge rule.
    #[arg(long, value_enum)]
    pub tpm_charge: Option<ChargeArg>,
    /// What a request refused with 429 costs against the limits.
    #[arg(long, value_enum)]
    pub refused_charge: Option<crate::config::RefusedCharge>,
    /// Fixed latency of each answer, in ms.
    #[arg(long)]
    pub base_ms: Option<f64>,
    /// Latency per output token, in ms.
    #[arg(long)]
    pub per_token_ms: Option<f64>,
    /// Lognormal latency noise (0: none).
    #[arg(long)]
    pub sigma: Option<f64>,
    /// How long a 429 takes to arrive, in ms (default 10).
    #[arg(long)]
    pub reject_ms: Option<f64>,
    /// Maximum concurrent generations (excess requests queue).
    #[arg(long)]
    pub capacity: Option<NonZeroU64>,
    /// Probability of a random server error.
    #[arg(long)]
    pub error_rate: Option<f64>,
    /// Status of random server errors (500, 502, 503, 504).
    #[arg(long)]
    pub error_status: Option<u16>,
    /// Probability that a request hangs.
    #[arg(long)]
    pub hang_rate: Option<f64>,
    /// Seed of latency noise, faults and verdicts.
    #[arg(long)]
    pub seed: Option<u64>,
    /// An API key and its organization, `KEY=ORG` (each organization has its own limits); repeat.
    #[arg(long = "key", value_name = "KEY=ORG")]
    pub keys: Vec<String>,
    /// Answer 401 to requests without a known key.
    #[arg(long)]
    pub require_key: bool,
    /// How prompt tokens are counted.
    #[arg(long, value_enum, default_value = "bpe")]
    pub tokenizer: Tokenizer,
    /// Completion length when a request does not hint one (header x-mock-completion-tokens).
    #[arg(long, default_value_t = 100)]
    pub completion_tokens: u32,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Server threads, each with its own runtime and listener (default: one per core).
    #[arg(long)]
    pub threads: Option<std::num::NonZeroUsize>,
}

/// `--profile`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ProfileArg {
    /// OpenAI's buckets.
    Openai,
    /// Azure's windows.
    Azure,
}

/// `--tpm-charge`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ChargeArg {
    /// prompt + max_tokens.
    PromptPlusMax,
    /// max(prompt, max_tokens).
    MaxOfPromptAndMax,
}

/// The provider settings the flags describe.
pub fn provider(args: &Args) -> Result<ProviderConfig, MockError> {
    #[derive(serde::Deserialize)]
    struct ScenarioFile {
        #[serde(default)]
        provider: ProviderConfig,
    }
    let mut p = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| MockError::Io {
                what: format!("cannot read {}", path.display()),
                source,
            })?;
            let f: ScenarioFile =
                toml::from_str(&text).map_err(|e| MockError::Config(format!("{}: {e}", path.display())))?;
            f.provider
        }
        None => ProviderConfig::default(),
    };
    let bad = |flag: &str, e: String| MockError::Config(format!("--{flag}: {e}"));
    if let Some(m) = &args.model {
        p.model = m.clone();
    }
    p.tpm = args.tpm.or(p.tpm);
    p.rpm = args.rpm.or(p.rpm);
    if let Some(pr) = args.profile {
        p.profile = match pr {
            ProfileArg::Openai => Profile::Openai,
            ProfileArg::Azure => Profile::Azure,
        };
    }
    if let Some(c) = args.refused_charge {
        p.refused_charge = c;
    }
    if let Some(c) = args.tpm_charge {
        p.tpm_charge = match c {
            ChargeArg::PromptPlusMax => TpmCharge::PromptPlusMax,
            ChargeArg::MaxOfPromptAndMax => TpmCharge::MaxOfPromptAndMax,
        };
    }
    let l: &mut LatencyConfig = &mut p.latency;
    if let Some(v) = args.base_ms {
        l.base_ms = Millis::try_from(v).map_err(|e| bad("base-ms", e))?;
    }
    if let Some(v) = args.per_token_ms {
        l.per_output_token_ms = Millis::try_from(v).map_err(|e| bad("per-token-ms", e))?;
    }
    if let Some(v) = args.sigma {
        l.sigma = Sigma::try_from(v).map_err(|e| bad("sigma", e))?;
    }
    if let Some(v) = args.reject_ms {
        l.reject_ms = Millis::try_from(v).map_err(|e| bad("reject-ms", e))?;
    }
    p.capacity = args.capacity.or(p.capacity);
    if let Some(v) = args.error_rate {
        p.error_rate = Probability::try_from(v).map_err(|e| bad("error-rate", e))?;
    }
    if let Some(v) = args.error_status {
        p.error_status = ServerStatus::try_from(v).map_err(|e| bad("error-status", e))?;
    }
    if let Some(v) = args.hang_rate {
        p.hang_rate = Probability::try_from(v).map_err(|e| bad("hang-rate", e))?;
    }
    if let Some(s) = args.seed {
        p.seed = s;
    }
    Ok(p)
}

/// The server settings the flags describe.
pub fn config(args: &Args) -> Result<ServerConfig, MockError> {
    let mut c = ServerConfig::new(provider(args)?);
    for k in &args.keys {
        let (key, org) = k
            .split_once('=')
            .ok_or_else(|| MockError::Config(format!("--key {k}: write KEY=ORG")))?;
        c.keys.push((key.to_owned(), org.to_owned()));
    }
    c.require_key = args.require_key;
    c.tokenizer = args.tokenizer;
    c.completion_tokens = args.completion_tokens;
    c.max_body_bytes = args.max_body_bytes;
    Ok(c)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler works on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Serves until SIGINT or SIGTERM, printing the address it listens on to `out` first.
pub fn run_blocking(args: &Args, out: &mut dyn std::io::Write) -> Result<(), MockError> {
    let config = config(args)?;
    let addr: std::net::SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .map_err(|e| MockError::Config(format!("--host {} --port {}: {e}", args.host, args.port)))?;
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, |n| n.get());
    crate::server::serve_per_core(
        config,
        addr,
        threads,
        |at| {
            let _ = writeln!(out, "mock-llm listening on http://{at}");
            let _ = out.flush();
        },
        async {
            shutdown_signal().await;
            eprintln!("mock-llm: shutting down");
        },
    )
}
