//! What a run costs: LLM tokens at the model's prices, and the orchestration units a strategy
//! bills (state transitions, queue requests, function invocations).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A billable orchestration unit, priced in [`Pricing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A Step Functions Standard state transition (retries count too).
    StateTransition,
    /// An SQS request (send, receive, delete, change visibility), per 64 KB chunk.
    SqsRequest,
    /// A Lambda invocation.
    LambdaRequest,
    /// A Lambda GB-second of duration.
    LambdaGbSecond,
    /// A DynamoDB write request unit (on-demand).
    DynamoWrite,
    /// A DynamoDB read request unit (on-demand, strongly consistent).
    DynamoRead,
    /// A Step Functions Express execution (request).
    ExpressRequest,
    /// A Step Functions Express GB-second of duration (billed on 64 MB, *unverified*).
    ExpressGbSecond,
}

/// Prices in US dollars. `[pricing]` in a scenario; every key optional, each from 0 to
/// [`MAX_PRICE`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Per million prompt tokens. Default 0.15 (gpt-4o-mini, OpenAI pricing page, 2024; *check*).
    #[serde(default = "input", deserialize_with = "price")]
    pub input_per_million: f64,
    /// Per million completion tokens. Default 0.60 (gpt-4o-mini, OpenAI pricing page, 2024; *check*).
    #[serde(default = "output", deserialize_with = "price")]
    pub output_per_million: f64,
    /// Per Step Functions Standard transition. Default 0.000025 ($0.025 per 1,000; AWS pricing).
    #[serde(default = "transition", deserialize_with = "price")]
    pub state_transition: f64,
    /// Per SQS request. Default 0.0000004 ($0.40 per million; third-party guides, *check*).
    #[serde(default = "sqs", deserialize_with = "price")]
    pub sqs_request: f64,
    /// Per Lambda invocation. Default 0.0000002 ($0.20 per million; *check*).
    #[serde(default = "lambda", deserialize_with = "price")]
    pub lambda_request: f64,
    /// Per Lambda GB-second. Default 0.0000166667 (*check*).
    #[serde(default = "gb_second", deserialize_with = "price")]
    pub lambda_gb_second: f64,
    /// Per DynamoDB on-demand write request unit. Default 0.00000125 ($1.25 per million; *check*).
    #[serde(default = "dynamo", deserialize_with = "price")]
    pub dynamo_write: f64,
    /// Per DynamoDB on-demand read request unit. Default 0.00000025 ($0.25 per million; *check*).
    #[serde(default = "dynamo_read", deserialize_with = "price")]
    pub dynamo_read: f64,
    /// Per Step Functions Express execution. Default 0.000001 ($1.00 per million; AWS pricing).
    #[serde(default = "express", deserialize_with = "price")]
    pub express_request: f64,
    /// Per Step Functions Express GB-second. Default 0.00001667 (AWS pricing, first tier; *check*).
    #[serde(default = "express_gb_second", deserialize_with = "price")]
    pub express_gb_second: f64,
}

/// The largest price of anything, in dollars: $10,000 (a hundred times the dearest model's price
/// per million tokens). Bounded so that a run's cost stays a number a chart can draw.
pub const MAX_PRICE: f64 = 10_000.0;

fn price<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v.is_finite() && (0.0..=MAX_PRICE).contains(&v)) {
        return Err(serde::de::Error::custom(format!(
            "{v} is out of range: a price lies in [0, 10000] dollars"
        )));
    }
    Ok(v)
}

fn input() -> f64 {
    0.15
}
fn output() -> f64 {
    0.60
}
fn transition() -> f64 {
    0.000_025
}
fn sqs() -> f64 {
    0.000_000_4
}
fn lambda() -> f64 {
    0.000_000_2
}
fn gb_second() -> f64 {
    0.000_016_666_7
}
fn dynamo() -> f64 {
    0.000_001_25
}
fn dynamo_read() -> f64 {
    0.000_000_25
}
fn express() -> f64 {
    0.000_001
}
fn express_gb_second() -> f64 {
    0.000_016_67
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            input_per_million: input(),
            output_per_million: output(),
            state_transition: transition(),
            sqs_request: sqs(),
            lambda_request: lambda(),
            lambda_gb_second: gb_second(),
            dynamo_write: dynamo(),
            dynamo_read: dynamo_read(),
            express_request: express(),
            express_gb_second: express_gb_second(),
        }
    }
}

impl Pricing {
    /// The price of one unit.
    pub fn unit(&self, unit: Unit) -> f64 {
        match unit {
            Unit::StateTransition => self.state_transition,
            Unit::SqsRequest => self.sqs_request,
            Unit::LambdaRequest => self.lambda_request,
            Unit::LambdaGbSecond => self.lambda_gb_second,
            Unit::DynamoWrite => self.dynamo_write,
            Unit::DynamoRead => self.dynamo_read,
            Unit::ExpressRequest => self.express_request,
            Unit::ExpressGbSecond => self.express_gb_second,
        }
    }

    /// The cost of a run that was billed `prompt` and `completion` tokens and `units`.
    pub fn cost(&self, prompt: u64, completion: u64, units: &BTreeMap<Unit, f64>) -> Cost {
        let llm = prompt as f64 / 1e6 * self.input_per_million + completion as f64 / 1e6 * self.output_per_million;
        // fold from +0.0: an empty f64 sum is -0.0, which would print as "-0".
        let orchestration = units.iter().fold(0.0, |acc, (u, n)| acc + self.unit(*u) * n);
        let r = crate::numbers::round6;
        Cost {
            llm_usd: r(llm),
            orchestration_usd: r(orchestration),
            total_usd: r(llm + orchestration),
            by_unit_usd: units.iter().map(|(u, n)| (*u, r(self.unit(*u) * n))).collect(),
        }
    }
}

/// What a run cost, in US dollars.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// LLM tokens.
    pub llm_usd: f64,
    /// Orchestration units.
    pub orchestration_usd: f64,
    /// Both.
    pub total_usd: f64,
    /// The orchestration cost by kind of unit (transitions, Lambda requests, GB-seconds…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_unit_usd: BTreeMap<Unit, f64>,
}
