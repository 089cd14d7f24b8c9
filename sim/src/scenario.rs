//! Scenario files: what to run, against what, and what happens during the run.
//!
//! Parsing is strict and all-or-nothing: [`Scenario::parse`] either returns a complete, validated
//! scenario or an error naming the key and the line; there is no partially loaded state.

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::Path;
use std::time::Duration;

use mock_llm::config::{LimitChange, Outage, ProviderConfig, Slowdown};
use serde::{Deserialize, Serialize};

use crate::dist::Dist;
use crate::error::SimError;
use crate::params::{ParamUpdate, Params};

/// A whole scenario. See README.md ("Scenario reference") for every key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in report titles and output folders.
    pub name: String,
    /// One or two sentences on what the scenario shows. Default empty.
    #[serde(default)]
    pub description: String,
    /// The run's seed; `--seed` overrides it. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated time after which a run is abandoned as stuck. Default `"48h"`.
    #[serde(default = "default_time_limit")]
    pub time_limit: Dur,
    /// When chunk results are stored: `incremental` (default) or `at-end` (per file).
    #[serde(default)]
    pub results: ResultsMode,
    /// The work.
    pub workload: WorkloadConfig,
    /// The LLM provider's limits, latency and faults.
    #[serde(default)]
    pub provider: ProviderConfig,
    /// The client's settings.
    #[serde(default)]
    pub client: ClientConfig,
    /// The gatekeeper's per-user quotas.
    #[serde(default)]
    pub quotas: Quotas,
    /// The parameter store's initial values.
    #[serde(default)]
    pub params: Params,
    /// Things that happen during the run.
    #[serde(default)]
    pub timeline: Vec<toml::Spanned<TimelineEntry>>,
    /// Prices of tokens and orchestration units.
    #[serde(default)]
    pub pricing: crate::cost::Pricing,
    /// Per-strategy settings, `[strategies.NAME]`, read by each strategy.
    #[serde(default)]
    pub strategies: BTreeMap<String, toml::Spanned<toml::Table>>,
    /// The scenario's source text and origin, kept to turn spans into line numbers.
    #[serde(skip)]
    pub source: Source,
}

/// Where a scenario came from, and its text.
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// A path, or `built-in NAME`.
    pub origin: String,
    /// The TOML text.
    pub text: String,
}

impl Source {
    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    /// An error about the value at `span`, naming its line.
    pub fn error_at(&self, span: std::ops::Range<usize>, message: impl std::fmt::Display) -> SimError {
        SimError::Scenario {
            origin: self.origin.clone(),
            message: format!("line {}: {message}", self.line_of(span.start)),
        }
    }
}

fn default_seed() -> u64 {
    42
}
fn default_time_limit() -> Dur {
    Dur(Duration::from_secs(48 * 3600))
}

impl Scenario {
    /// Parses and validates a scenario. `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, SimError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| SimError::Scenario {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        s.source = Source {
            origin: origin.to_owned(),
            text: text.to_owned(),
        };
        s.validate()?;
        Ok(s)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text, &path.display().to_string())
    }

    fn validate(&self) -> Result<(), SimError> {
        let users = self.workload.users.get();
        let files = self.workload.files;
        let chunks = f64::from(files) * self.workload.chunks_per_file.mean();
        if chunks > MAX_CHUNKS {
            return Err(SimError::Scenario {
                origin: self.source.origin.clone(),
                message: format!(
                    "[workload]: `files` × the mean of `chunks_per_file` is {chunks}, more than the largest \
                     workload allowed, 10,000,000 chunks"
                ),
            });
        }
        if let Some(w) = &self.workload.user_weights
            && w.len() != users as usize
        {
            return Err(SimError::Scenario {
                origin: self.source.origin.clone(),
                message: format!(
                    "[workload]: `user_weights` has {} weights, but `users` is {users}: give one per user",
                    w.len()
                ),
            });
        }
        for entry in &self.timeline {
            if let Action::Cancel(c) = &entry.get_ref().action {
                match c {
                    CancelTarget::User(u) if u.0 >= users => {
                        return Err(self.source.error_at(
                            entry.span(),
                            format!("timeline: cancel names {u}, but the workload has only {users} users (user-1 to user-{users})"),
                        ));
                    }
                    CancelTarget::File(f) if f.0 >= files => {
                        return Err(self.source.error_at(
                            entry.span(),
                            format!("timeline: cancel names {f}, but the workload has only {files} files (file-1 to file-{files})"),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The timeline in time order (stable for equal times: file order).
    pub fn events(&self) -> Vec<TimelineEntry> {
        let mut v: Vec<TimelineEntry> = self.timeline.iter().map(|e| e.get_ref().clone()).collect();
        v.sort_by_key(|e| e.at.0);
        v
    }

    /// The provider configuration with the run's seed and the timeline's outages and limit changes.
    pub fn provider_config(&self) -> ProviderConfig {
        let mut p = self.provider.clone();
        p.seed = simkit::rng::derive_seed(self.seed, "provider");
        for e in self.events() {
            match e.action {
                Action::Outage(o) => p.schedule.outages.push(Outage {
                    start: e.at.0,
                    end: e.at.0 + o.duration.0,
                    status: o.status.0,
                }),
                Action::Slowdown(s) => p.schedule.slowdowns.push(Slowdown {
                    start: e.at.0,
                    end: e.at.0 + s.duration.0,
                    factor: s.factor,
                }),
                Action::Limits(l) => p.schedule.limit_changes.push(LimitChange {
                    at: e.at.0,
                    tpm: l.tpm,
                    rpm: l.rpm,
                }),
                _ => {}
            }
        }
        p
    }

    /// Settings for the strategy `name`, with the line they start on, if the scenario has them.
    pub fn strategy_table(&self, name: &str) -> Option<(&toml::Table, usize)> {
        self.strategies
            .get(name)
            .map(|t| (t.get_ref(), self.source.line_of(t.span().start)))
    }
}

/// A duration written as text: `"90s"`, `"10m"`, `"1h30m"`, `"250ms"`; at most [`Dur::MAX`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Dur(pub Duration);

impl Dur {
    /// The longest duration a scenario may write: 365 days (a Step Functions Standard execution's
    /// longest life). Sums of a few such durations stay far from overflowing any clock.
    pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);
}

impl TryFrom<String> for Dur {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let d = humantime::parse_duration(s.trim())
            .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. \"90s\", \"10m\", \"1h30m\", \"250ms\""))?;
        if d > Dur::MAX {
            return Err(format!("`{s}` is longer than the longest duration allowed, 365 days"));
        }
        Ok(Dur(d))
    }
}

impl From<Dur> for String {
    fn from(d: Dur) -> String {
        humantime::format_duration(d.0).to_string()
    }
}

/// When chunk results reach the result store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultsMode {
    /// Each chunk's result is stored as soon as it arrives, so a crashed run resumes from the last
    /// successful validation.
    #[default]
    Incremental,
    /// A file's results are stored together when the file ends; a crash loses them.
    AtEnd,
}

/// The files and chunks to validate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Number of files, 0 to 1,000,000 (and at most 10,000,000 chunks in all, on average).
    #[serde(deserialize_with = "files")]
    pub files: u32,
    /// Number of users uploading them (files are spread uniformly at random), 1 to 1,000,000.
    /// Default 1.
    #[serde(default = "one", deserialize_with = "users")]
    pub users: NonZeroU32,
    /// Chunks per file; no draw above 100,000.
    #[serde(deserialize_with = "chunks")]
    pub chunks_per_file: Dist,
    /// Prompt tokens per chunk; no draw above 10,000,000.
    #[serde(deserialize_with = "tokens")]
    pub prompt_tokens: Dist,
    /// Tokens the model writes per chunk (cut at `max_tokens`); no draw above 10,000,000.
    #[serde(deserialize_with = "tokens")]
    pub completion_tokens: Dist,
    /// The `max_tokens` of every request, 1 to 10,000,000.
    #[serde(deserialize_with = "max_tokens")]
    pub max_tokens: NonZeroU32,
    /// When files arrive. Default all at once.
    #[serde(default)]
    pub arrival: Arrival,
    /// How files are shared among users: one weight per user (`[6, 1, 1]`: user-1 uploads six
    /// times as many files as each other user), each 1 to 1,000,000. Default: every user alike.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "user_weights")]
    pub user_weights: Option<Vec<u32>>,
}

fn user_weights<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<u32>>, D::Error> {
    let v = Vec::<u32>::deserialize(d)?;
    if let Some(w) = v.iter().find(|w| !(1..=1_000_000).contains(*w)) {
        return Err(serde::de::Error::custom(format!(
            "{w} is out of range: each of `user_weights` lies in [1, 1000000]"
        )));
    }
    Ok(Some(v))
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

/// The most files a workload may have.
pub const MAX_FILES: u32 = 1_000_000;
/// The most chunks a workload may have on average (files × mean chunks per file): ten times the
/// `million` scenario, about a minute of simulation per strategy.
pub const MAX_CHUNKS: f64 = 10_000_000.0;
/// The most chunks a file may have.
pub const MAX_CHUNKS_PER_FILE: u32 = 100_000;
/// The most tokens a prompt, a completion or `max_tokens` may have (beyond any model's context).
pub const MAX_TOKENS: u32 = 10_000_000;

fn at_most<'de, D: serde::Deserializer<'de>>(d: D, max: u32, what: &str) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v > max {
        return Err(serde::de::Error::custom(format!(
            "{v} is out of range: {what} lie in [0, {max}]"
        )));
    }
    Ok(v)
}
fn files<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    at_most(d, MAX_FILES, "`files`")
}
fn nonzero_at_most<'de, D: serde::Deserializer<'de>>(d: D, max: u32, what: &str) -> Result<NonZeroU32, D::Error> {
    let v = NonZeroU32::deserialize(d)?;
    if v.get() > max {
        return Err(serde::de::Error::custom(format!(
            "{v} is out of range: {what} in [1, {max}]"
        )));
    }
    Ok(v)
}
fn users<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NonZeroU32, D::Error> {
    nonzero_at_most(d, MAX_FILES, "`users` lie")
}
fn max_tokens<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NonZeroU32, D::Error> {
    nonzero_at_most(d, MAX_TOKENS, "`max_tokens` lies")
}
fn bounded_dist<'de, D: serde::Deserializer<'de>>(d: D, max: u32, what: &str) -> Result<Dist, D::Error> {
    let v = Dist::deserialize(d)?;
    v.check_at_most(max)
        .map_err(|e| serde::de::Error::custom(format!("{what}: {e}")))?;
    Ok(v)
}
fn chunks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Dist, D::Error> {
    bounded_dist(d, MAX_CHUNKS_PER_FILE, "chunks per file")
}
fn tokens<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Dist, D::Error> {
    bounded_dist(d, MAX_TOKENS, "tokens")
}

/// When files arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Arrival {
    /// Every file at time zero.
    #[default]
    AllAtOnce,
    /// A Poisson process with `per_minute` files per minute on average.
    Poisson {
        /// Mean arrival rate.
        per_minute: Rate,
    },
    /// Evenly spaced, `per_minute` files per minute.
    Steady {
        /// Arrival rate.
        per_minute: Rate,
    },
    /// `size` files at once, every `every`.
    Bursts {
        /// Time between bursts.
        every: Dur,
        /// Files per burst.
        size: NonZeroU32,
    },
}

/// A rate of arrivals per minute, from 0.001 (one file in about 17 hours) to 1,000,000.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Rate(pub f64);

impl TryFrom<f64> for Rate {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() && (0.001..=1_000_000.0).contains(&v) {
            Ok(Rate(v))
        } else {
            Err(format!("{v} is out of range: `per_minute` lies in [0.001, 1000000]"))
        }
    }
}
impl From<Rate> for f64 {
    fn from(r: Rate) -> f64 {
        r.0
    }
}

/// The client's settings (what an HTTP client would be configured with).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// How long a request may take before the client gives up on it. Default `"600s"`,
    /// openai-python's default timeout.
    #[serde(default = "default_timeout")]
    pub request_timeout: Dur,
    /// Live runs: ask for streamed answers (server-sent events). Default false.
    #[serde(default)]
    pub stream: bool,
    /// Simulated runs: the network between the client and the provider. Live runs have a real
    /// one. Default `{ base_ms = 0, jitter_ms = 5 }`.
    #[serde(default)]
    pub network: Network,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            request_timeout: default_timeout(),
            stream: false,
            network: Network::default(),
        }
    }
}

/// The network of a simulated run: each request takes `base_ms` plus a uniform draw in
/// `[0, jitter_ms]` to reach the provider, and its answer the same (another draw) to come back.
/// The draws are a function of the chunk, the attempt and the direction, so every strategy meets
/// the same network for the same request.
///
/// Why it exists: without it, clients told to retry at the same instant (a 429's retry-after
/// points every throttled worker at the moment the bucket holds enough again) reach the
/// provider at the same virtual millisecond and are served in a fixed order, where a real
/// network orders them at random. A pool of identical requests then behaves measurably unlike
/// its live twin (README, "Fidelity"). The default jitter of 5 ms is a quiet regional path
/// (a few ms of variation); the virtual clock has 1 ms resolution, so the draws order requests
/// in whole milliseconds. Set `jitter_ms = 0` for an ideal network (exact arithmetic in tests).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawNetwork", into = "RawNetwork")]
pub struct Network {
    /// Fixed one-way delay, in ms (0 to 60,000). Default 0.
    pub base_ms: f64,
    /// Largest extra one-way delay, in ms (0 to 60,000). Default 5.
    pub jitter_ms: f64,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default)]
    base_ms: f64,
    #[serde(default = "default_jitter_ms")]
    jitter_ms: f64,
}

fn default_jitter_ms() -> f64 {
    5.0
}

impl Default for Network {
    fn default() -> Self {
        Self {
            base_ms: 0.0,
            jitter_ms: default_jitter_ms(),
        }
    }
}

impl TryFrom<RawNetwork> for Network {
    type Error = String;
    fn try_from(r: RawNetwork) -> Result<Self, String> {
        for (key, v) in [("base_ms", r.base_ms), ("jitter_ms", r.jitter_ms)] {
            if !(v.is_finite() && (0.0..=60_000.0).contains(&v)) {
                return Err(format!("network `{key}` = {v:?} must lie in [0, 60000] (milliseconds)"));
            }
        }
        Ok(Network {
            base_ms: r.base_ms,
            jitter_ms: r.jitter_ms,
        })
    }
}

impl From<Network> for RawNetwork {
    fn from(n: Network) -> Self {
        RawNetwork {
            base_ms: n.base_ms,
            jitter_ms: n.jitter_ms,
        }
    }
}

impl Network {
    /// The one-way delay for a uniform draw `u` in `[0, 1)`.
    pub fn delay(&self, u: f64) -> Duration {
        Duration::from_secs_f64((self.base_ms + self.jitter_ms * u) / 1000.0)
    }
}

fn default_timeout() -> Dur {
    Dur(Duration::from_secs(600))
}

/// The gatekeeper's per-user quotas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// How many files of one user may be in progress at once. Absent: no limit.
    #[serde(default)]
    pub per_user_concurrent_files: Option<NonZeroU32>,
    /// What happens to a file over quota: `queue` (default; it waits for a slot) or `reject`.
    #[serde(default)]
    pub over_quota: OverQuota,
}

/// What the gatekeeper does with a file over its user's quota.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverQuota {
    /// Hold it until one of the user's files ends.
    #[default]
    Queue,
    /// Refuse it (graceful degradation).
    Reject,
}

/// A user, shown as `user-1` … `user-N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(pub u32);

/// A file, shown as `file-1` … `file-N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileId(pub u32);

macro_rules! named_id {
    ($t:ident, $prefix:literal) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($prefix, "-{}"), u64::from(self.0) + 1)
            }
        }
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.strip_prefix(concat!($prefix, "-"))
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| *n >= 1)
                    .map(|n| $t(n - 1))
                    .ok_or_else(|| {
                        format!(
                            concat!(
                                "`{}` is not a ",
                                $prefix,
                                " name: write `",
                                $prefix,
                                "-1`, `",
                                $prefix,
                                "-2`, …"
                            ),
                            s
                        )
                    })
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.to_string()
            }
        }
    };
}
named_id!(UserId, "user");
named_id!(FileId, "file");

/// One thing that happens during the run: `at` and exactly one action key.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RawEntry")]
pub struct TimelineEntry {
    /// When, from the run's start.
    pub at: Dur,
    /// What.
    pub action: Action,
}

/// What a timeline entry does.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Change parameter-store values: `set = { max-parallelism = 8 }`.
    Set(ParamUpdate),
    /// Fail every request for a while: `outage = { for = "2m", status = 503 }`.
    Outage(OutageSpec),
    /// Slow every answer down for a while (a latency spike): `slowdown = { for = "2m", factor = 5 }`.
    Slowdown(SlowdownSpec),
    /// Change the provider's limits: `limits = { tpm = 100000, rpm = 300 }`.
    Limits(LimitsUpdate),
    /// Cancel a file, a user's files, or the whole run: `cancel = { user = "user-3" }`,
    /// `{ file = "file-17" }`, `{ run = true }`.
    Cancel(CancelTarget),
    /// Crash the orchestrator; it restarts after `restart_after` and resumes from the result store:
    /// `crash = { restart_after = "30s" }`.
    Crash(CrashSpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    at: Dur,
    set: Option<ParamUpdate>,
    outage: Option<OutageSpec>,
    slowdown: Option<SlowdownSpec>,
    limits: Option<LimitsUpdate>,
    cancel: Option<RawCancel>,
    crash: Option<CrashSpec>,
}

impl TryFrom<RawEntry> for TimelineEntry {
    type Error = String;
    fn try_from(r: RawEntry) -> Result<Self, String> {
        // toml reports errors inside an array of tables at the array's first header, so the
        // message names the entry by its `at`.
        let at = String::from(r.at);
        let here = |msg: &str| format!("timeline entry at \"{at}\": {msg}");
        let mut actions = vec![];
        if let Some(s) = r.set {
            actions.push(Action::Set(s));
        }
        if let Some(o) = r.outage {
            actions.push(Action::Outage(o));
        }
        if let Some(s) = r.slowdown {
            actions.push(Action::Slowdown(s));
        }
        if let Some(l) = r.limits {
            if l.tpm.is_none() && l.rpm.is_none() {
                return Err(here("`limits` must set `tpm`, `rpm` or both"));
            }
            actions.push(Action::Limits(l));
        }
        if let Some(c) = r.cancel {
            actions.push(Action::Cancel(c.try_into().map_err(|e: String| here(&e))?));
        }
        if let Some(c) = r.crash {
            actions.push(Action::Crash(c));
        }
        match actions.len() {
            1 => Ok(TimelineEntry {
                at: r.at,
                action: actions.pop().expect("one action"),
            }),
            0 => Err(here(
                "it needs one action: `set`, `outage`, `slowdown`, `limits`, `cancel` or `crash`",
            )),
            _ => Err(here(
                "it takes exactly one action; split it into several [[timeline]] entries",
            )),
        }
    }
}

/// An outage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageSpec {
    /// How long it lasts.
    #[serde(rename = "for")]
    pub duration: Dur,
    /// The status every request gets: a 5xx, or 429. Default 503.
    #[serde(default = "default_outage_status")]
    pub status: OutageStatus,
}

fn default_outage_status() -> OutageStatus {
    OutageStatus(503)
}

/// The status of an outage: a server error (500–599) or 429 (a provider refusing everything).
/// Anything else (a 200, a 404) would not be an outage: the client would read it as an answer
/// or as its own mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct OutageStatus(pub u16);

impl TryFrom<u16> for OutageStatus {
    type Error = String;
    fn try_from(v: u16) -> Result<Self, String> {
        if v == 429 || (500..=599).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("outage status {v} must be a 5xx or 429"))
        }
    }
}
impl From<OutageStatus> for u16 {
    fn from(s: OutageStatus) -> u16 {
        s.0
    }
}
impl std::fmt::Display for OutageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// New provider limits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsUpdate {
    /// New TPM limit, 1 to 10^15.
    #[serde(default, deserialize_with = "mock_llm::config::limit")]
    pub tpm: Option<NonZeroU64>,
    /// New RPM limit, 1 to 10^15.
    #[serde(default, deserialize_with = "mock_llm::config::limit")]
    pub rpm: Option<NonZeroU64>,
}

/// What a cancellation applies to.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelTarget {
    /// One file (before or after it arrives).
    File(FileId),
    /// Every file of a user that has arrived by then.
    User(UserId),
    /// Everything: files in progress, queued and yet to arrive.
    Run,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCancel {
    file: Option<FileId>,
    user: Option<UserId>,
    run: Option<bool>,
}

impl TryFrom<RawCancel> for CancelTarget {
    type Error = String;
    fn try_from(c: RawCancel) -> Result<Self, String> {
        match (c.file, c.user, c.run) {
            (Some(f), None, None) => Ok(CancelTarget::File(f)),
            (None, Some(u), None) => Ok(CancelTarget::User(u)),
            (None, None, Some(true)) => Ok(CancelTarget::Run),
            _ => Err("`cancel` takes exactly one of `file = \"file-N\"`, `user = \"user-N\"` or `run = true`".into()),
        }
    }
}

/// A latency spike: answers admitted in the window take `factor` times their usual time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowdownSpec {
    /// How long it lasts.
    #[serde(rename = "for")]
    pub duration: Dur,
    /// How many times slower, above 0 and at most 1,000.
    #[serde(deserialize_with = "factor")]
    pub factor: f64,
}

fn factor<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v > 0.0 && v <= 1000.0) {
        return Err(serde::de::Error::custom(format!(
            "{v} is out of range: a slowdown's `factor` lies in (0, 1000]"
        )));
    }
    Ok(v)
}

/// An orchestrator crash.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashSpec {
    /// How long until the orchestrator is back. Default `"30s"`.
    #[serde(default = "default_restart")]
    pub restart_after: Dur,
}

fn default_restart() -> Dur {
    Dur(Duration::from_secs(30))
}

/// A number as TOML writes it: an integer when whole, else a float (so that a whole-number
/// setting such as `max_attempts` accepts `3.0` from a sweep or a parameter change).
pub fn toml_number(value: f64) -> toml::Value {
    if value.fract() == 0.0 && value.abs() < 9e15 {
        toml::Value::Integer(value as i64)
    } else {
        toml::Value::Float(value)
    }
}

/// Parameters a sweep can vary: the parameter store's keys and the provider's limits; besides
/// these, any strategy setting as `NAME.key`.
pub const SWEEPABLE: &[&str] = &["max-parallelism", "target-tpm", "throttle-threshold", "tpm", "rpm"];

impl Scenario {
    /// This scenario with one sweepable parameter set to `value` (see [`SWEEPABLE`]). A dotted
    /// `NAME.key` sets the key `key` of the `[strategies.NAME]` table (and its live value in the
    /// parameter store, should the scenario set one); the strategy checks it when it is built.
    pub fn with_param(&self, param: &str, value: f64) -> Result<Scenario, SimError> {
        // Huge values in scientific notation: `1e308` rather than 309 digits.
        let shown = if value.abs() >= 1e15 {
            format!("{value:e}")
        } else {
            value.to_string()
        };
        let bad = |why: &str| SimError::Scenario {
            origin: self.source.origin.clone(),
            message: format!("cannot set {param} to {shown}: {why}"),
        };
        let whole = |v: f64| -> Result<u64, SimError> {
            if v.fract() == 0.0 && v >= 1.0 && v <= u64::MAX as f64 {
                Ok(v as u64)
            } else {
                Err(bad("it takes a whole number >= 1"))
            }
        };
        let mut s = self.clone();
        match param {
            "max-parallelism" => {
                let v = u32::try_from(whole(value)?).map_err(|_| bad("too large"))?;
                s.params.max_parallelism = std::num::NonZeroU32::new(v).ok_or_else(|| bad("must be >= 1"))?;
            }
            "target-tpm" => s.params.target_tpm = NonZeroU64::new(whole(value)?).ok_or_else(|| bad("must be >= 1"))?,
            "throttle-threshold" => {
                s.params.throttle_threshold = crate::params::Fraction::try_from(value).map_err(|e| bad(&e))?
            }
            "tpm" | "rpm" => {
                let v = whole(value)?;
                if v > mock_llm::config::MAX_LIMIT {
                    return Err(bad("a limit lies in [1, 10^15] per minute"));
                }
                if param == "tpm" {
                    s.provider.tpm = NonZeroU64::new(v);
                } else {
                    s.provider.rpm = NonZeroU64::new(v);
                }
            }
            dotted
                if dotted
                    .split_once('.')
                    .is_some_and(|(n, k)| !n.is_empty() && !k.is_empty()) =>
            {
                if !value.is_finite() {
                    return Err(bad("it must be a finite number"));
                }
                let (name, key) = dotted.split_once('.').expect("checked by the guard");
                let v = toml_number(value);
                let table = s
                    .strategies
                    .entry(name.to_owned())
                    .or_insert_with(|| toml::Spanned::new(0..0, toml::Table::new()));
                table.get_mut().insert(key.to_owned(), v);
                if s.params.strategy.contains_key(dotted) {
                    s.params.strategy.insert(dotted.to_owned(), value);
                }
            }
            _ => {
                return Err(SimError::Scenario {
                    origin: self.source.origin.clone(),
                    message: format!(
                        "`{param}` cannot be swept; the parameters are: {}, or `STRATEGY.key` for a strategy's setting",
                        SWEEPABLE.join(", ")
                    ),
                });
            }
        }
        crate::params::check_shared(Some(s.params.max_parallelism), Some(s.params.target_tpm)).map_err(|e| bad(&e))?;
        Ok(s)
    }
}
