//! The errors of the strategies crate.

/// What can go wrong choosing or configuring a strategy.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// No strategy has that name.
    #[error("unknown strategy `{name}`; the strategies are: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// A `[strategies.NAME]` table names no strategy.
    #[error("{origin}: line {line}: [strategies.{name}]: there is no strategy `{name}`; the strategies are: {known}")]
    UnknownTable {
        /// The scenario's origin.
        origin: String,
        /// The name in the table header.
        name: String,
        /// The line the table starts on.
        line: usize,
        /// The names there are.
        known: String,
    },
    /// A dotted strategy setting (`NAME.key`) in `[params]` or a timeline `set` is not valid.
    #[error("{origin}: {place}: `{key}`: {message}")]
    Setting {
        /// The scenario's origin.
        origin: String,
        /// Where it is set (`[params]`, or a timeline entry's line).
        place: String,
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The `[strategies.NAME]` table is not valid.
    #[error("{origin}: line {line}: [strategies.{name}]: {message}")]
    Settings {
        /// The scenario's origin.
        origin: String,
        /// The strategy.
        name: String,
        /// The line the table starts on.
        line: usize,
        /// What is wrong.
        message: String,
    },
}
