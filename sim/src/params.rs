//! The parameter store: values that can change during a run, without redeploying anything, and
//! that strategies can watch.
//!
//! Besides the three shared parameters, the store holds **strategy settings** under dotted keys,
//! `NAME.key` (e.g. `fixed.max_attempts`): live overrides of the key `key` of the
//! `[strategies.NAME]` table, for the settings a strategy reads live. The strategies crate
//! checks each such key against the strategy's own settings before a run starts.

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroU64};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The parameters, as kept in the parameter store (keys in kebab-case, as in DESIGN.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "RawParams", into = "RawParams")]
pub struct Params {
    /// Upper bound on concurrent chunk validations, 1 to 100,000. Default 5.
    #[serde(default = "default_parallelism")]
    pub max_parallelism: NonZeroU32,
    /// The token rate a TPM controller aims for, per minute, 1 to 10^15. Default 50,000.
    #[serde(default = "default_target_tpm")]
    pub target_tpm: NonZeroU64,
    /// Share of the target at which a controller starts holding back. Default 0.9.
    #[serde(default = "default_threshold")]
    pub throttle_threshold: Fraction,
    /// Strategy settings by dotted key (`NAME.key`); none by default.
    pub strategy: BTreeMap<String, f64>,
}

/// [`Params`] as written: the three parameters, and any dotted strategy keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawParams {
    #[serde(default = "default_parallelism")]
    max_parallelism: NonZeroU32,
    #[serde(default = "default_target_tpm")]
    target_tpm: NonZeroU64,
    #[serde(default = "default_threshold")]
    throttle_threshold: Fraction,
    #[serde(flatten)]
    strategy: BTreeMap<String, f64>,
}

impl TryFrom<RawParams> for Params {
    type Error = String;
    fn try_from(r: RawParams) -> Result<Self, String> {
        check_strategy_keys(&r.strategy)?;
        check_shared(Some(r.max_parallelism), Some(r.target_tpm))?;
        Ok(Params {
            max_parallelism: r.max_parallelism,
            target_tpm: r.target_tpm,
            throttle_threshold: r.throttle_threshold,
            strategy: r.strategy,
        })
    }
}

impl From<Params> for RawParams {
    fn from(p: Params) -> Self {
        RawParams {
            max_parallelism: p.max_parallelism,
            target_tpm: p.target_tpm,
            throttle_threshold: p.throttle_threshold,
            strategy: p.strategy,
        }
    }
}

/// The parameters every strategy shares.
pub const SHARED_KEYS: &[&str] = &["max-parallelism", "target-tpm", "throttle-threshold"];

/// The largest `max-parallelism`: 100,000 concurrent validations (a hundred times the default
/// Lambda account concurrency).
pub const MAX_PARALLELISM: u32 = 100_000;

/// The largest `target-tpm`: the provider's largest limit.
pub const MAX_TARGET_TPM: u64 = mock_llm::config::MAX_LIMIT;

/// Checks the shared parameters' ranges.
pub fn check_shared(max_parallelism: Option<NonZeroU32>, target_tpm: Option<NonZeroU64>) -> Result<(), String> {
    if let Some(p) = max_parallelism.filter(|p| p.get() > MAX_PARALLELISM) {
        return Err(format!(
            "`max-parallelism` = {p} is out of range: it lies in [1, 100000]"
        ));
    }
    if let Some(t) = target_tpm.filter(|t| t.get() > MAX_TARGET_TPM) {
        return Err(format!("`target-tpm` = {t} is out of range: it lies in [1, 10^15]"));
    }
    Ok(())
}

/// Keys other than the shared ones must be `NAME.key` strategy settings with finite values.
fn check_strategy_keys(extra: &BTreeMap<String, f64>) -> Result<(), String> {
    for (k, v) in extra {
        let dotted = k
            .split_once('.')
            .is_some_and(|(n, key)| !n.is_empty() && !key.is_empty());
        if !dotted {
            return Err(format!(
                "unknown parameter `{k}`; the parameters are {}, or `STRATEGY.key` for a strategy's setting \
                 (e.g. `fixed.max_attempts`)",
                SHARED_KEYS.join(", ")
            ));
        }
        if !v.is_finite() {
            return Err(format!("`{k}` = {v:?} is not a finite number"));
        }
    }
    Ok(())
}

impl Default for Params {
    fn default() -> Self {
        Self {
            max_parallelism: default_parallelism(),
            target_tpm: default_target_tpm(),
            throttle_threshold: default_threshold(),
            strategy: BTreeMap::new(),
        }
    }
}

fn default_parallelism() -> NonZeroU32 {
    NonZeroU32::new(5).expect("5 is not zero")
}
fn default_target_tpm() -> NonZeroU64 {
    NonZeroU64::new(50_000).expect("50000 is not zero")
}
fn default_threshold() -> Fraction {
    Fraction(0.9)
}

/// A change to some parameters (a timeline `set`); absent keys stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "RawUpdate", into = "RawUpdate")]
pub struct ParamUpdate {
    /// New `max-parallelism`.
    pub max_parallelism: Option<NonZeroU32>,
    /// New `target-tpm`.
    pub target_tpm: Option<NonZeroU64>,
    /// New `throttle-threshold`.
    pub throttle_threshold: Option<Fraction>,
    /// New strategy settings, by dotted key (`NAME.key`).
    pub strategy: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_parallelism: Option<NonZeroU32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_tpm: Option<NonZeroU64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    throttle_threshold: Option<Fraction>,
    #[serde(flatten)]
    strategy: BTreeMap<String, f64>,
}

impl TryFrom<RawUpdate> for ParamUpdate {
    type Error = String;
    fn try_from(r: RawUpdate) -> Result<Self, String> {
        check_strategy_keys(&r.strategy)?;
        check_shared(r.max_parallelism, r.target_tpm)?;
        Ok(ParamUpdate {
            max_parallelism: r.max_parallelism,
            target_tpm: r.target_tpm,
            throttle_threshold: r.throttle_threshold,
            strategy: r.strategy,
        })
    }
}

impl From<ParamUpdate> for RawUpdate {
    fn from(p: ParamUpdate) -> Self {
        RawUpdate {
            max_parallelism: p.max_parallelism,
            target_tpm: p.target_tpm,
            throttle_threshold: p.throttle_threshold,
            strategy: p.strategy,
        }
    }
}

impl Params {
    /// These parameters with `update` applied.
    pub fn with(mut self, update: &ParamUpdate) -> Params {
        if let Some(v) = update.max_parallelism {
            self.max_parallelism = v;
        }
        if let Some(v) = update.target_tpm {
            self.target_tpm = v;
        }
        if let Some(v) = update.throttle_threshold {
            self.throttle_threshold = v;
        }
        for (k, v) in &update.strategy {
            self.strategy.insert(k.clone(), *v);
        }
        self
    }

    /// A strategy setting's live value, by dotted key (`NAME.key`), if the store holds one.
    pub fn setting(&self, key: &str) -> Option<f64> {
        self.strategy.get(key).copied()
    }
}

/// A number in `(0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Fraction(pub f64);

impl TryFrom<f64> for Fraction {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if v > 0.0 && v <= 1.0 {
            Ok(Fraction(v))
        } else {
            Err(format!("{v} must lie in (0, 1]"))
        }
    }
}
impl From<Fraction> for f64 {
    fn from(f: Fraction) -> f64 {
        f.0
    }
}

/// The store: current values, and a channel to watch them change.
#[derive(Debug)]
pub struct ParamStore {
    tx: watch::Sender<Params>,
}

impl ParamStore {
    /// A store holding `initial`.
    pub fn new(initial: Params) -> Self {
        Self {
            tx: watch::Sender::new(initial),
        }
    }

    /// The current values.
    pub fn get(&self) -> Params {
        self.tx.borrow().clone()
    }

    /// The three shared parameters now, without copying the strategy settings.
    pub fn shared(&self) -> (NonZeroU32, NonZeroU64, Fraction) {
        let p = self.tx.borrow();
        (p.max_parallelism, p.target_tpm, p.throttle_threshold)
    }

    /// A strategy setting's live value, by dotted key (`NAME.key`), if the store holds one.
    pub fn setting(&self, key: &str) -> Option<f64> {
        self.tx.borrow().setting(key)
    }

    /// A receiver that sees every change (`changed().await`).
    pub fn watch(&self) -> watch::Receiver<Params> {
        self.tx.subscribe()
    }

    /// Applies a change; watchers are woken.
    pub fn set(&self, update: &ParamUpdate) {
        self.tx.send_modify(|p| *p = p.clone().with(update));
    }
}
