//! Settings of the `stepfn` strategy, read from `[strategies.stepfn]`.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};
use sim::scenario::Dur;

/// The workflow type (AWS Step Functions developer guide, "Standard and Express workflows").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workflow {
    /// Exactly-once, up to a year, billed per state transition, history kept (the default).
    #[default]
    Standard,
    /// At-least-once, at most 5 minutes, billed per execution and GB-second.
    Express,
}

/// What a Task resource does, given to each ARN in `resources`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Picks this execution's Map concurrency from the parameter store and the tokens of the
    /// last minute; answers its input with `maxConcurrency` added.
    TpmController,
    /// One LLM call for the chunk in its input (`{"chunk": n}` or `n`); a 429 is the error
    /// `RateLimited`, another failure `LLM.ServerError`, `LLM.Timeout` or `LLM.RequestTooLarge`.
    ValidateChunk,
    /// Every chunk in its input's `chunks`, `maxConcurrency` at once, inside one invocation (the
    /// DESIGN.md reference's DynamicValidator); fails with the first LLM error.
    ValidateFile,
    /// Stores the file's results (a short write).
    StoreResults,
}

/// `[strategies.stepfn.lambda]`: the Lambda account and functions (see `crate::aws::lambda`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaConfig {
    /// Concurrent executions the account allows, 1 to 1,000,000. Default 1,000 (Lambda quotas).
    #[serde(
        default = "default_account",
        deserialize_with = "crate::range::u32_in::<_, 1, 1_000_000>"
    )]
    pub account_concurrency: u32,
    /// Reserved concurrency by role name (`validate-chunk = 100`). Default none.
    #[serde(default)]
    pub reserved: BTreeMap<String, u32>,
    /// Initialization of a new execution environment. Default `"250ms"` (*unverified*: a small
    /// function in a managed runtime).
    #[serde(default = "default_cold")]
    pub cold_start: Dur,
    /// How long an idle environment stays warm. Default `"10m"` (*unverified*).
    #[serde(default = "default_idle")]
    pub idle_timeout: Dur,
    /// Memory of every function in MB (GB-seconds), 128 to 10,240 (the Lambda limits). Default 512.
    #[serde(
        default = "default_memory",
        deserialize_with = "crate::range::u32_in::<_, 128, 10_240>"
    )]
    pub memory_mb: u32,
    /// The functions' timeout: an invocation running longer is stopped and fails with
    /// `Sandbox.Timedout` (Lambda's error name), 1 s to 900 s (the Lambda limits). Default `"300s"`.
    #[serde(
        default = "default_timeout",
        deserialize_with = "crate::range::dur_in::<_, 1_000, 900_000>"
    )]
    pub timeout: Dur,
    /// The handler's own time besides its LLM calls. Default `"20ms"`.
    #[serde(default = "default_handler")]
    pub handler: Dur,
}

impl LambdaConfig {
    /// The Lambda model these settings describe.
    pub fn model(&self) -> crate::aws::lambda::LambdaModel {
        crate::aws::lambda::LambdaModel {
            account_concurrency: self.account_concurrency,
            reserved: self.reserved.clone(),
            cold_start: self.cold_start.0,
            idle_timeout: self.idle_timeout.0,
            memory_mb: self.memory_mb,
        }
    }
}

impl Default for LambdaConfig {
    fn default() -> Self {
        Self {
            account_concurrency: default_account(),
            reserved: BTreeMap::new(),
            cold_start: default_cold(),
            idle_timeout: default_idle(),
            memory_mb: default_memory(),
            timeout: default_timeout(),
            handler: default_handler(),
        }
    }
}

/// `[strategies.stepfn]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFnConfig {
    /// The state machine: a path to an ASL JSON file (relative to the scenario's folder), or
    /// `validation` (the shipped pipeline, the default) or `reference` (DESIGN.md's two states).
    #[serde(default = "default_definition")]
    pub definition: String,
    /// `standard` (default) or `express`.
    #[serde(default)]
    pub workflow: Workflow,
    /// The service's time per state transition. Default `"25ms"` (*unverified*).
    #[serde(default = "default_transition")]
    pub transition_overhead: Dur,
    /// What each Task ARN does. Default: the ARNs of the shipped definitions.
    #[serde(default = "default_resources")]
    pub resources: BTreeMap<String, Role>,
    /// Redrive a failed execution automatically this long after it failed (Standard only: AWS
    /// cannot redrive Express executions). Default: never.
    #[serde(default)]
    pub redrive_after: Option<Dur>,
    /// Redrives per file, at most, 1 to 1,000. Default 3.
    #[serde(default = "default_redrives", deserialize_with = "crate::range::attempts")]
    pub max_redrives: NonZeroU32,
    /// Express only: the share of executions that run twice (Express is at-least-once: AWS
    /// documents that an execution may run more than once, not how often). From 0 to 1.
    /// Default 0.
    #[serde(default)]
    pub express_duplicate_rate: Share,
    /// Execution histories kept in the report (`stepfn-history.jsonl`): the first this many
    /// executions' (a history of a 50-chunk file is about 500 KB); the rest are never recorded
    /// and are counted in `histories_dropped`. Default 20.
    /// From 0 to 10,000.
    #[serde(
        default = "default_histories",
        deserialize_with = "crate::range::u32_in::<_, 0, 10_000>"
    )]
    pub max_histories: u32,
    /// The Lambda account.
    #[serde(default)]
    pub lambda: LambdaConfig,
}

impl Default for StepFnConfig {
    fn default() -> Self {
        Self {
            definition: default_definition(),
            workflow: Workflow::default(),
            transition_overhead: default_transition(),
            resources: default_resources(),
            redrive_after: None,
            max_redrives: default_redrives(),
            express_duplicate_rate: Share(0.0),
            max_histories: default_histories(),
            lambda: LambdaConfig::default(),
        }
    }
}

/// A share in [0, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Share(pub f64);

impl TryFrom<f64> for Share {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&v) {
            Ok(Share(v))
        } else {
            Err(format!("{v:?} must lie in [0, 1]"))
        }
    }
}

impl From<Share> for f64 {
    fn from(s: Share) -> f64 {
        s.0
    }
}

fn ms(v: u64) -> Dur {
    Dur(std::time::Duration::from_millis(v))
}
fn default_account() -> u32 {
    1_000
}
fn default_cold() -> Dur {
    ms(250)
}
fn default_idle() -> Dur {
    ms(600_000)
}
fn default_memory() -> u32 {
    512
}
fn default_timeout() -> Dur {
    ms(300_000)
}
fn default_handler() -> Dur {
    ms(20)
}
fn default_definition() -> String {
    "validation".into()
}
fn default_transition() -> Dur {
    ms(25)
}
fn default_histories() -> u32 {
    20
}
fn default_redrives() -> NonZeroU32 {
    NonZeroU32::new(3).expect("3 is not zero")
}

/// The ARNs of the shipped definitions (`scenarios/asl/`), with their roles.
pub fn default_resources() -> BTreeMap<String, Role> {
    let fun = |name: &str| format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
    BTreeMap::from([
        (fun("tpm-controller"), Role::TpmController),
        (fun("validate-chunk"), Role::ValidateChunk),
        (fun("store-results"), Role::StoreResults),
        (
            "arn:aws:lambda:region:account:function:TPMController".into(),
            Role::TpmController,
        ),
        (
            "arn:aws:lambda:region:account:function:DynamicValidator".into(),
            Role::ValidateFile,
        ),
    ])
}
