//! Errors as ASL names them: a failure carries an error name and a cause, both strings.
//!
//! The predefined names (AWS Step Functions developer guide, "Handling errors in Step Functions
//! workflows", "Error names").

/// A wildcard that matches any error name except [`RUNTIME`] and [`DATA_LIMIT_EXCEEDED`].
pub const ALL: &str = "States.ALL";
/// Matches any error of a task except [`TIMEOUT`].
pub const TASK_FAILED: &str = "States.TaskFailed";
/// A task ran longer than `TimeoutSeconds`, or missed a heartbeat.
pub const TIMEOUT: &str = "States.Timeout";
/// A task sent no heartbeat within `HeartbeatSeconds`: raised as [`TIMEOUT`], and matched by
/// this name too in Retry and Catch.
pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
/// An unrecoverable error in the interpreter: a path that selects nothing, a value of the wrong
/// type. Never caught by `States.ALL`.
pub const RUNTIME: &str = "States.Runtime";
/// A state's output exceeded 256 KiB. Never caught by `States.ALL`.
pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
/// A `ResultPath` cannot be applied to the state's input.
pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
/// A parameter (e.g. a Map's `ItemsPath`, a Wait's `SecondsPath`) was not what the state needs.
pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
/// A branch of a Parallel state failed.
pub const BRANCH_FAILED: &str = "States.BranchFailed";
/// A Choice state matched no rule and has no `Default`.
pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
/// An intrinsic function failed.
pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
/// More Map iterations failed than the tolerated count or percentage.
pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";

/// The largest state input or output, in bytes (Step Functions quotas: 256 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// A failure: what a Fail state, a task, or the interpreter raises, and what Retry and Catch
/// match by `error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The error name (`States.Timeout`, `Lambda.TooManyRequestsException`, …).
    pub error: String,
    /// A human-readable cause.
    pub cause: String,
    /// A [`TIMEOUT`] for a missed heartbeat (it also matches [`HEARTBEAT_TIMEOUT`]).
    pub heartbeat: bool,
}

impl Failure {
    /// A failure named `error` with `cause`.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
            heartbeat: false,
        }
    }

    /// Whether a retrier or catcher listing `names` matches this failure: by exact name, by
    /// `States.ALL` (not for `States.Runtime` or `States.DataLimitExceeded`: terminal), or by
    /// `States.TaskFailed` (any task error but a timeout) where `from_task`.
    pub fn matches(&self, names: &[String], from_task: bool) -> bool {
        let terminal = self.error == RUNTIME || self.error == DATA_LIMIT_EXCEEDED;
        names.iter().any(|n| {
            n == &self.error
                || (n == HEARTBEAT_TIMEOUT && self.heartbeat)
                || (n == ALL && !terminal)
                || (n == TASK_FAILED && from_task && !terminal && self.error != TIMEOUT)
        })
    }

    /// `{"Error": …, "Cause": …}`, as a catcher places it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"Error": self.error, "Cause": self.cause})
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.cause)
    }
}
