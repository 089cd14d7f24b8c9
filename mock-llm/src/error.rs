//! The errors of the mock-llm crate.

/// What can go wrong configuring or running the mock server.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// A configuration is not valid: the message names the key (and line, for files).
    #[error("{0}")]
    Config(String),
    /// The server could not bind or serve.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
