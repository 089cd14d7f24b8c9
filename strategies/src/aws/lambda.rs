//! Lambda, as pure state taking `now`: execution environments per function, warm reuse and
//! cold starts, an account concurrency limit and reserved concurrency, the scaling rate, and
//! billed duration.
//!
//! Rules (AWS Lambda developer guide): an invocation runs in an idle execution environment of
//! its function when there is one (warm), else in a new one, which first initializes (a cold
//! start); environments are reused until idle for a while (AWS does not document how long:
//! *unverified*, default 10 min here); the account runs at most its concurrency limit (default
//! 1,000) at once, and a function with reserved concurrency at most that many while the others
//! share the rest; past either limit, and past 1,000 new environments per 10 s per function
//! ("Lambda scaling behavior"), a synchronous invocation is refused with
//! `TooManyRequestsException`, which Step Functions reports as `Lambda.TooManyRequestsException`;
//! duration is billed per millisecond, rounded up, times the memory in GB.

use std::collections::BTreeMap;
use std::time::Duration;

use simkit::quota::Quota;

/// Lambda's account-level settings and one function's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct LambdaModel {
    /// Concurrent executions the account allows.
    pub account_concurrency: u32,
    /// Reserved concurrency by function name.
    pub reserved: BTreeMap<String, u32>,
    /// How long a new environment takes before the handler runs.
    pub cold_start: Duration,
    /// How long an idle environment stays warm.
    pub idle_timeout: Duration,
    /// Memory of every function, in MB (for GB-seconds).
    pub memory_mb: u32,
}

/// Why an invocation could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The account's concurrency limit is reached.
    AccountConcurrency,
    /// The function's reserved concurrency is reached.
    ReservedConcurrency,
    /// The function may not add environments this fast.
    ScalingRate,
}

impl Refusal {
    /// The error Step Functions sees, and its cause.
    pub fn error(self) -> (&'static str, &'static str) {
        let cause = match self {
            Refusal::AccountConcurrency => "Rate Exceeded. (the account's concurrency limit is reached)",
            Refusal::ReservedConcurrency => "Rate Exceeded. (the function's reserved concurrency is reached)",
            Refusal::ScalingRate => "Rate Exceeded. (the function is scaling faster than 1,000 environments per 10 s)",
        };
        ("Lambda.TooManyRequestsException", cause)
    }
}

/// A started invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// It needs a new environment first.
    pub cold: bool,
}

#[derive(Debug)]
struct Function {
    /// When each idle environment became idle.
    idle: Vec<Duration>,
    running: u32,
    scaling: Quota,
}

/// The account's functions.
#[derive(Debug)]
pub struct Lambda {
    model: LambdaModel,
    functions: BTreeMap<String, Function>,
    running: u32,
    /// Invocations started.
    pub invocations: u64,
    /// Of those, cold starts.
    pub cold_starts: u64,
    /// Invocations refused.
    pub throttles: u64,
    /// Billed GB-seconds.
    pub gb_seconds: f64,
    /// Most invocations running at once.
    pub peak: u32,
}

impl Lambda {
    /// No environments yet.
    pub fn new(model: LambdaModel) -> Self {
        Self {
            model,
            functions: BTreeMap::new(),
            running: 0,
            invocations: 0,
            cold_starts: 0,
            throttles: 0,
            gb_seconds: 0.0,
            peak: 0,
        }
    }

    /// Invocations running now.
    pub fn running(&self) -> u32 {
        self.running
    }

    /// Starts an invocation of `function` at `now`, or says why not.
    pub fn begin(&mut self, function: &str, now: Duration) -> Result<Started, Refusal> {
        let idle_timeout = self.model.idle_timeout;
        // (Its name copied only the first time: every invocation looks it up.)
        if !self.functions.contains_key(function) {
            self.functions.insert(
                function.to_owned(),
                Function {
                    idle: Vec::new(),
                    running: 0,
                    scaling: Quota::lambda_scaling(),
                },
            );
        }
        let refusal = match self.model.reserved.get(function) {
            // A reservation is the function's own pool.
            Some(&r) => (self.functions[function].running >= r).then_some(Refusal::ReservedConcurrency),
            // The others share what no function reserved.
            None => {
                let reserved_total: u32 = self.model.reserved.values().sum();
                let pool = self.model.account_concurrency.saturating_sub(reserved_total);
                let running_reserved: u32 = self
                    .functions
                    .iter()
                    .filter(|(name, _)| self.model.reserved.contains_key(name.as_str()))
                    .map(|(_, f)| f.running)
                    .sum();
                (self.running - running_reserved >= pool).then_some(Refusal::AccountConcurrency)
            }
        };
        if let Some(r) = refusal {
            self.throttles += 1;
            return Err(r);
        }
        let f = self.functions.get_mut(function).expect("inserted above");
        // Environments idle too long are gone; the most recently idle one is reused.
        f.idle.retain(|since| now.saturating_sub(*since) < idle_timeout);
        let cold = f.idle.pop().is_none();
        if cold && f.scaling.try_take(now, 1).is_err() {
            self.throttles += 1;
            return Err(Refusal::ScalingRate);
        }
        f.running += 1;
        self.running += 1;
        self.peak = self.peak.max(self.running);
        self.invocations += 1;
        if cold {
            self.cold_starts += 1;
        }
        Ok(Started { cold })
    }

    /// Ends an invocation of `function` at `now` that ran `billed` (initialization included
    /// for a cold start): its environment goes idle, and its duration is billed, rounded up to
    /// the millisecond. Returns the GB-seconds billed.
    pub fn end(&mut self, function: &str, now: Duration, billed: Duration) -> f64 {
        let f = self
            .functions
            .get_mut(function)
            .expect("an invocation began before it ends");
        f.running -= 1;
        f.idle.push(now);
        self.running -= 1;
        let ms = billed.as_nanos().div_ceil(1_000_000) as f64;
        let gb_s = f64::from(self.model.memory_mb) / 1024.0 * ms / 1000.0;
        self.gb_seconds += gb_s;
        gb_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> LambdaModel {
        LambdaModel {
            account_concurrency: 3,
            reserved: BTreeMap::new(),
            cold_start: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(600),
            memory_mb: 1024,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_second_invocation_reuses_the_warm_environment_until_it_expires() {
        let mut l = Lambda::new(model());
        assert_eq!(l.begin("f", secs(0)), Ok(Started { cold: true }));
        l.end("f", secs(1), secs(1));
        assert_eq!(l.begin("f", secs(2)), Ok(Started { cold: false }), "warm");
        l.end("f", secs(3), secs(1));
        assert_eq!(
            l.begin("f", secs(3 + 600)),
            Ok(Started { cold: true }),
            "idle 10 min: gone"
        );
        assert_eq!((l.invocations, l.cold_starts), (3, 2));
    }

    #[test]
    fn the_account_limit_refuses_past_it_and_reserved_concurrency_is_its_own() {
        let mut l = Lambda::new(model());
        for _ in 0..3 {
            l.begin("f", secs(0)).expect("under the limit");
        }
        assert_eq!(l.begin("g", secs(0)), Err(Refusal::AccountConcurrency));
        let mut m = model();
        m.reserved.insert("g".into(), 1);
        let mut l = Lambda::new(m);
        l.begin("f", secs(0)).expect("f has 2 unreserved");
        l.begin("f", secs(0)).expect("f has 2 unreserved");
        assert_eq!(
            l.begin("f", secs(0)),
            Err(Refusal::AccountConcurrency),
            "the third is g's"
        );
        assert_eq!(l.begin("g", secs(0)), Ok(Started { cold: true }));
        assert_eq!(l.begin("g", secs(0)), Err(Refusal::ReservedConcurrency));
        assert_eq!(l.throttles, 2);
    }

    #[test]
    fn duration_is_billed_per_millisecond_rounded_up() {
        let mut l = Lambda::new(model());
        l.begin("f", secs(0)).expect("starts");
        let gb_s = l.end("f", secs(1), Duration::from_micros(1_000_001));
        assert_eq!(gb_s, 1.001, "1 GB × 1,000.001 ms rounded up to 1,001 ms");
    }

    #[test]
    fn scaling_stops_at_a_thousand_new_environments_per_ten_seconds() {
        let mut m = model();
        m.account_concurrency = 5_000;
        let mut l = Lambda::new(m);
        for _ in 0..1_000 {
            l.begin("f", secs(0)).expect("the burst");
        }
        assert_eq!(l.begin("f", secs(0)), Err(Refusal::ScalingRate));
        assert!(l.begin("f", secs(1)).is_ok(), "100 more per second");
    }
}
