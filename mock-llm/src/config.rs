//! The provider's settings: limits, limiter profile, TPM charge rule, latency and faults.
//!
//! Every struct denies unknown fields, and every value with a valid range is a newtype whose
//! deserializer checks it, so that a TOML loader reports the exact key and line of a bad value.

use std::num::NonZeroU64;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything the provider model needs to know. Deserialized from a scenario's `[provider]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Model name echoed in responses and 429 messages. Default `"gpt-4o-mini"`.
    #[serde(default = "default_model")]
    pub model: String,
    /// Organization named in 429 messages. Default `"org-orchbench"`.
    #[serde(default = "default_organization")]
    pub organization: String,
    /// Tokens-per-minute limit, 1 to 10^15. Absent: no token limit.
    #[serde(default, deserialize_with = "limit")]
    pub tpm: Option<NonZeroU64>,
    /// Requests-per-minute limit. Absent: no request limit (with the `azure` profile, absent means
    /// derived from `tpm` at 6 RPM per 1,000 TPM). 1 to 10^15.
    #[serde(default, deserialize_with = "limit")]
    pub rpm: Option<NonZeroU64>,
    /// How limits are enforced. Default `openai`.
    #[serde(default)]
    pub profile: Profile,
    /// What a request is charged against TPM at admission. Default `prompt-plus-max`.
    #[serde(default)]
    pub tpm_charge: TpmCharge,
    /// What a request refused with 429 costs against the limits. Default `none`.
    #[serde(default)]
    pub refused_charge: RefusedCharge,
    /// How long answers take.
    #[serde(default)]
    pub latency: LatencyConfig,
    /// Maximum concurrent generations. Excess admitted requests queue (FIFO), so latency grows with
    /// load. 1 to 10^9; absent: unlimited.
    #[serde(default, deserialize_with = "capacity")]
    pub capacity: Option<NonZeroU64>,
    /// Probability that an admitted request fails with `error_status` (it is still charged against
    /// TPM: failed requests count, per the OpenAI cookbook). Default 0.
    #[serde(default)]
    pub error_rate: Probability,
    /// HTTP status of random failures: 500, 502, 503 or 504. Default 500.
    #[serde(default = "default_error_status")]
    pub error_status: ServerStatus,
    /// Probability that an admitted request hangs and never answers (the client's timeout ends
    /// it). Default 0.
    #[serde(default)]
    pub hang_rate: Probability,
    /// Fraction of chunks the validator finds invalid (a deterministic verdict per chunk).
    /// Default 0.1.
    #[serde(default = "default_invalid_rate")]
    pub invalid_rate: Probability,
    /// Seed of the provider's own randomness (latency noise, faults) and of the verdicts. Filled
    /// in by the scenario loader from the run's seed; default 0.
    #[serde(default)]
    pub seed: u64,
    /// Changes over time (outages, limit changes), filled in from a scenario's timeline.
    #[serde(skip)]
    pub schedule: Schedule,
    /// How much faster than real time the model runs: with K, the model sees `now × K` and every
    /// duration it answers with is divided by K, so a scenario runs K times faster with the same
    /// dynamics (`orchbench run --live --time-scale K`). Default 1.
    #[serde(skip, default = "one")]
    pub time_scale: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            model: default_model(),
            organization: default_organization(),
            tpm: None,
            rpm: None,
            profile: Profile::default(),
            tpm_charge: TpmCharge::default(),
            refused_charge: RefusedCharge::default(),
            latency: LatencyConfig::default(),
            capacity: None,
            error_rate: Probability::default(),
            error_status: default_error_status(),
            hang_rate: Probability::default(),
            invalid_rate: default_invalid_rate(),
            seed: 0,
            schedule: Schedule::default(),
            time_scale: 1.0,
        }
    }
}

impl ProviderConfig {
    /// The request limit in force under this profile: explicit `rpm`, or with the `azure` profile
    /// 6 RPM per 1,000 TPM (Azure OpenAI quota docs, see REFERENCE.md).
    pub fn effective_rpm(&self, tpm: Option<NonZeroU64>, rpm: Option<NonZeroU64>) -> Option<NonZeroU64> {
        match (self.profile, rpm, tpm) {
            (_, Some(r), _) => Some(r),
            (Profile::Azure, None, Some(t)) => NonZeroU64::new((t.get() * 6 / 1000).max(1)),
            _ => None,
        }
    }

    /// The TPM charge of a request under the configured rule.
    pub fn charge(&self, prompt_tokens: u32, max_tokens: u32) -> u64 {
        self.tpm_charge.charge(prompt_tokens, max_tokens)
    }
}

/// The length of Azure's request window for a deployment whose RPM is `rpm` at creation: 1 s when
/// the per-second share is at least one request, else 10 s (Azure OpenAI quota docs: RPM is
/// enforced over 1 s or 10 s windows). The length is a property of the deployment: a later limit
/// change keeps it (a simplification; Azure does not document the switch).
pub fn azure_request_window(rpm: u64) -> Duration {
    if rpm >= 60 {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    }
}

/// Requests per Azure window of length `window` for `rpm` requests per minute (at least one).
pub fn azure_per_window(rpm: u64, window: Duration) -> u64 {
    (u128::from(rpm) * window.as_nanos() / 60_000_000_000).max(1) as u64
}

fn default_model() -> String {
    "gpt-4o-mini".to_owned()
}
fn default_organization() -> String {
    "org-orchbench".to_owned()
}
fn default_error_status() -> ServerStatus {
    ServerStatus(500)
}
fn default_invalid_rate() -> Probability {
    Probability(0.1)
}

/// How limits are enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// OpenAI: RPM and TPM are buckets holding one minute's worth, refilled continuously at
    /// limit/60 per second, starting full (OpenAI rate-limit guide; the cookbook's parallel
    /// processor models them the same way).
    #[default]
    Openai,
    /// Azure OpenAI: RPM derived from TPM (6 per 1,000) and enforced over short windows (1 s, or
    /// 10 s below 60 RPM); TPM counted per one-minute window (Azure OpenAI quota docs).
    Azure,
}

/// What a request refused by a rate limit (429) costs against the limits.
///
/// OpenAI's help centre ("How can I solve 429: 'Too Many Requests' errors?", help.openai.com
/// article 5955604) says "unsuccessful requests contribute to your per-minute limit, so
/// continuously resending a request won't work", without saying how much they cost. This setting
/// models the three readings; which one a real provider applies is not documented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "server", derive(clap::ValueEnum))]
pub enum RefusedCharge {
    /// Nothing: a refused request costs only its round trip (the behaviour before this setting).
    #[default]
    None,
    /// One request against RPM.
    Requests,
    /// One request against RPM and its full charge against TPM.
    RequestsAndTokens,
}

/// What a request is charged against TPM at admission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TpmCharge {
    /// prompt tokens + `max_tokens`: what practitioners observe, and Azure's documented rule.
    #[default]
    PromptPlusMax,
    /// max(`max_tokens`, prompt tokens): OpenAI's documented rule.
    MaxOfPromptAndMax,
}

impl TpmCharge {
    /// The charge of one request.
    pub fn charge(self, prompt_tokens: u32, max_tokens: u32) -> u64 {
        match self {
            TpmCharge::PromptPlusMax => u64::from(prompt_tokens) + u64::from(max_tokens),
            TpmCharge::MaxOfPromptAndMax => u64::from(prompt_tokens.max(max_tokens)),
        }
    }
}

/// How long answers take.
///
/// A generation takes `(base_ms + per_output_token_ms × completion tokens) × noise`, where the
/// noise is lognormal with mean 1 and shape `sigma`, truncated to ±3σ so that a true minimum
/// latency exists (the lower bound of a run's ideal makespan uses it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// Fixed part of every generation, in ms (0 to 3,600,000). Default 400.
    #[serde(default = "default_base_ms")]
    pub base_ms: Millis,
    /// Time per output token, in ms (0 to 3,600,000). Default 15.
    #[serde(default = "default_per_token_ms")]
    pub per_output_token_ms: Millis,
    /// Shape of the lognormal noise, 0 (none) to 2. Default 0.3.
    #[serde(default = "default_sigma")]
    pub sigma: Sigma,
    /// Time to answer a request that is refused (429, 5xx, outage), in ms (0 to 3,600,000). Default 10.
    #[serde(default = "default_reject_ms")]
    pub reject_ms: Millis,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            base_ms: default_base_ms(),
            per_output_token_ms: default_per_token_ms(),
            sigma: default_sigma(),
            reject_ms: default_reject_ms(),
        }
    }
}

impl LatencyConfig {
    /// The noise-free generation time of a completion of `tokens` tokens.
    pub fn nominal(&self, tokens: u32) -> Duration {
        Duration::from_secs_f64((self.base_ms.0 + self.per_output_token_ms.0 * f64::from(tokens)) / 1000.0)
    }

    /// The smallest time a generation of `tokens` tokens can take (noise at its −3σ truncation).
    pub fn minimum(&self, tokens: u32) -> Duration {
        self.with_noise(tokens, -3.0)
    }

    /// The generation time of `tokens` tokens for a standard normal draw `z`.
    pub fn with_noise(&self, tokens: u32, z: f64) -> Duration {
        ms_to_duration((self.base_ms.0 + self.per_output_token_ms.0 * f64::from(tokens)) * self.noise_factor(z))
    }

    /// The noise multiplier for a standard normal draw `z` (truncated to ±3).
    pub fn noise_factor(&self, z: f64) -> f64 {
        let s = self.sigma.0;
        if s == 0.0 {
            1.0
        } else {
            (s * z.clamp(-3.0, 3.0) - s * s / 2.0).exp()
        }
    }

    /// How long a refusal takes to arrive.
    pub fn reject(&self) -> Duration {
        ms_to_duration(self.reject_ms.0)
    }
}

/// Milliseconds (finite, >= 0) as a duration rounded to whole nanoseconds.
fn ms_to_duration(ms: f64) -> Duration {
    Duration::from_nanos((ms * 1e6).round() as u64)
}

fn default_base_ms() -> Millis {
    Millis(400.0)
}
fn default_per_token_ms() -> Millis {
    Millis(15.0)
}
fn default_sigma() -> Sigma {
    Sigma(0.3)
}
fn default_reject_ms() -> Millis {
    Millis(10.0)
}

/// Things that change over a run, at times measured from its start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    /// Windows in which every request fails with a status.
    pub outages: Vec<Outage>,
    /// Limit changes, in time order.
    pub limit_changes: Vec<LimitChange>,
    /// Windows in which answers are slower (latency spikes).
    pub slowdowns: Vec<Slowdown>,
}

/// A window in which every answer admitted takes `factor` times its usual generation time (a
/// latency spike: a provider under load, a degraded region). Rate limiting is unchanged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slowdown {
    /// When it starts (from the run's start).
    pub start: Duration,
    /// When it ends (exclusive).
    pub end: Duration,
    /// How many times slower, more than 0 and at most 1,000.
    pub factor: f64,
}

/// A window in which every request fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    /// When it starts (from the run's start).
    pub start: Duration,
    /// When it ends (exclusive).
    pub end: Duration,
    /// The HTTP status every request gets meanwhile.
    pub status: u16,
}

/// A change of limits at a point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitChange {
    /// When it applies (from the run's start).
    pub at: Duration,
    /// The new TPM limit, if it changes.
    pub tpm: Option<NonZeroU64>,
    /// The new RPM limit, if it changes.
    pub rpm: Option<NonZeroU64>,
}

/// A probability in `[0, 1]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Probability(pub f64);

impl TryFrom<f64> for Probability {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("{v} is not a probability: it must lie between 0 and 1"))
        }
    }
}
impl From<Probability> for f64 {
    fn from(p: Probability) -> f64 {
        p.0
    }
}

/// A time in milliseconds, from 0 to [`Millis::MAX`] (one hour: no generation or refusal takes
/// longer, and the bound keeps every derived duration far from overflow).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Millis(pub f64);

impl Millis {
    /// The largest value: one hour.
    pub const MAX: f64 = 3_600_000.0;
}

impl TryFrom<f64> for Millis {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() && (0.0..=Self::MAX).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!(
                "{v} is out of range: a time in milliseconds lies in [0, 3600000] (one hour)"
            ))
        }
    }
}

/// The shape of the latency noise, from 0 to [`Sigma::MAX`].
///
/// Why 2: the noise has mean 1, so its median is `exp(−σ²/2)`. At σ = 2 a median generation
/// takes 14% of its nominal time and a +3σ one 55 times it; beyond that the distribution is no
/// longer a model of latency (at σ = 10 every generation rounds to 0 ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Sigma(pub f64);

impl Sigma {
    /// The largest shape.
    pub const MAX: f64 = 2.0;
}

impl TryFrom<f64> for Sigma {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() && (0.0..=Self::MAX).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("{v} is out of range: the noise's shape `sigma` lies in [0, 2]"))
        }
    }
}
impl From<Sigma> for f64 {
    fn from(p: Sigma) -> f64 {
        p.0
    }
}

/// The largest TPM or RPM limit a scenario may set: 10^15 per minute. Far beyond any real
/// provider's, and small enough that a limit times a minute in nanoseconds fits in 128 bits
/// and a bucket's level in an `f64` with whole-token precision.
pub const MAX_LIMIT: u64 = 1_000_000_000_000_000;

/// Checks a capacity (concurrent generations) against 10^9; for `deserialize_with`.
pub fn capacity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NonZeroU64>, D::Error> {
    at_most(d, 1_000_000_000, "`capacity` lies in [1, 10^9]")
}

/// Checks a limit (TPM, RPM) against [`MAX_LIMIT`]; for `deserialize_with`.
pub fn limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NonZeroU64>, D::Error> {
    at_most(d, MAX_LIMIT, "a limit lies in [1, 10^15] per minute")
}

/// An optional positive whole number no larger than `max`; `range` says the range in the error.
fn at_most<'de, D: serde::Deserializer<'de>>(d: D, max: u64, range: &str) -> Result<Option<NonZeroU64>, D::Error> {
    match Option::<NonZeroU64>::deserialize(d)? {
        Some(n) if n.get() > max => Err(serde::de::Error::custom(format!("{n} is out of range: {range}"))),
        v => Ok(v),
    }
}
impl From<Millis> for f64 {
    fn from(p: Millis) -> f64 {
        p.0
    }
}

/// A server-error status the provider may answer with: 500, 502, 503 or 504.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct ServerStatus(pub u16);

impl TryFrom<u16> for ServerStatus {
    type Error = String;
    fn try_from(v: u16) -> Result<Self, String> {
        if matches!(v, 500 | 502 | 503 | 504) {
            Ok(Self(v))
        } else {
            Err(format!("status {v} is not a server error: use 500, 502, 503 or 504"))
        }
    }
}
impl From<ServerStatus> for u16 {
    fn from(s: ServerStatus) -> u16 {
        s.0
    }
}
