//! The parameter store: values that can change during a run, without redeploying anything, and
//! that strategies can watch.

use std::num::{NonZeroU32, NonZeroU64};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The parameters, as kept in the parameter store (keys in kebab-case, as in DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Params {
    /// Upper bound on concurrent chunk validations. Default 5.
    #[serde(default = "default_parallelism")]
    pub max_parallelism: NonZeroU32,
    /// The token rate a TPM controller aims for, per minute. Default 50,000.
    #[serde(default = "default_target_tpm")]
    pub target_tpm: NonZeroU64,
    /// Share of the target at which a controller starts holding back. Default 0.9.
    #[serde(default = "default_threshold")]
    pub throttle_threshold: Fraction,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            max_parallelism: default_parallelism(),
            target_tpm: default_target_tpm(),
            throttle_threshold: default_threshold(),
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ParamUpdate {
    /// New `max-parallelism`.
    pub max_parallelism: Option<NonZeroU32>,
    /// New `target-tpm`.
    pub target_tpm: Option<NonZeroU64>,
    /// New `throttle-threshold`.
    pub throttle_threshold: Option<Fraction>,
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
        self
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
        *self.tx.borrow()
    }

    /// A receiver that sees every change (`changed().await`).
    pub fn watch(&self) -> watch::Receiver<Params> {
        self.tx.subscribe()
    }

    /// Applies a change; watchers are woken.
    pub fn set(&self, update: &ParamUpdate) {
        self.tx.send_modify(|p| *p = p.with(update));
    }
}
