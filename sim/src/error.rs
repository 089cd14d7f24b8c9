//! The errors of the engine.

use std::time::Duration;

/// Everything that can go wrong loading a scenario or running a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario text is not valid: the message names the key and the line.
    #[error("{origin}: {message}")]
    Scenario {
        /// Where the scenario came from (a path, or `built-in NAME`).
        origin: String,
        /// What is wrong, and where.
        message: String,
    },
    /// The scenario file could not be read.
    #[error("cannot read scenario {path}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The run did not finish within the scenario's simulated-time limit.
    #[error(
        "the run did not finish within its time limit of {limit:?} (simulated): {unfinished} files \
         unfinished; raise `time_limit` in the scenario if the workload really needs longer"
    )]
    TimeLimit {
        /// The limit.
        limit: Duration,
        /// Files not in a final state.
        unfinished: u64,
    },
    /// A task the strategy spawned panicked: a bug in the strategy, reported as an error of the
    /// run rather than as failed files.
    #[error("strategy `{strategy}` panicked in a task it spawned: {message}")]
    StrategyPanicked {
        /// The strategy.
        strategy: String,
        /// The panic's message (the first, when several panicked).
        message: String,
    },
    /// A strategy's configuration was rejected.
    #[error("{0}")]
    Strategy(String),
    /// The result journal could not be used: the message says what is wrong and at which byte.
    #[error("journal {path}: {message}")]
    Journal {
        /// The journal's path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The runtime could not be built.
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
}
