//! Renders runs: the report folder (`report.json`, `timeseries.csv`) and the comparison table
//! printed in the terminal.
//!
//! Start at [`write_dir`]. Everything here is a function of [`sim::ReportFile`], never of live
//! objects.
//!
//! - [`table`]: the comparison table;
//! - [`csv`]: the per-second series as CSV;
//! - [`error`]: the error type, [`ReportError`].

#![warn(missing_docs)]

pub mod csv;
pub mod error;
pub mod table;

use std::path::{Path, PathBuf};

pub use error::ReportError;
use sim::ReportFile;

/// The files [`write_dir`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// `report.json`.
    pub json: PathBuf,
    /// `timeseries.csv`.
    pub csv: PathBuf,
}

/// `report.json` as text: pretty-printed, with a final newline.
pub fn to_json(report: &ReportFile) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("reports always serialize: no maps with non-string keys");
    s.push('\n');
    s
}

/// Reads a `report.json`.
pub fn read_json(path: &Path) -> Result<ReportFile, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ReportError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Writes the report folder `dir` (created if missing): `report.json` and `timeseries.csv`.
/// Each file is written to a temporary name and renamed, so a reader never sees half a file.
pub fn write_dir(dir: &Path, report: &ReportFile) -> Result<Written, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let json = dir.join("report.json");
    let csv = dir.join("timeseries.csv");
    write_atomic(&json, to_json(report).as_bytes())?;
    write_atomic(&csv, csv::timeseries(report).as_bytes())?;
    Ok(Written { json, csv })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ReportError::Io {
            path: path.to_owned(),
            source,
        })
}
