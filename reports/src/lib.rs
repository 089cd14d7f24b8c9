//! Renders runs: the report folder (`report.json`, `timeseries.csv`, `report.md`, `report.html`),
//! the comparison table printed in the terminal, and the regression check between two reports.
//!
//! Start at [`write_dir`]. Everything here is a function of [`sim::ReportFile`], never of live
//! objects.
//!
//! - [`table`]: the comparison table;
//! - [`csv`]: the per-second series as CSV;
//! - [`html`], [`charts`], [`palette`]: the self-contained HTML page and its SVG charts;
//! - [`markdown`]: the table and a plain-language reading;
//! - [`regress`]: comparing a report against a baseline;
//! - [`error`]: the error type, [`ReportError`].

#![warn(missing_docs)]

pub mod charts;
pub mod csv;
pub mod error;
pub mod html;
pub mod markdown;
pub mod palette;
pub mod regress;
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
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// The strategies' artifacts, `STRATEGY-NAME.jsonl` (see `RunContext::artifact`).
    pub artifacts: Vec<PathBuf>,
}

/// `report.json` as text: pretty-printed, with a final newline.
pub fn to_json(report: &ReportFile) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("reports always serialize: no maps with non-string keys");
    s.push('\n');
    s
}

/// Reads a `report.json`, given its path or its report folder.
pub fn read_json(path: &Path) -> Result<ReportFile, ReportError> {
    // A report folder stands for its report.json.
    let folder;
    let path = if path.is_dir() {
        folder = path.join("report.json");
        folder.as_path()
    } else {
        path
    };
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ReportError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Writes the report folder `dir` (created if missing): `report.json`, `timeseries.csv`,
/// `report.md` and `report.html`. Each file is written to a temporary name and renamed, so a reader
/// never sees half a file.
pub fn write_dir(dir: &Path, report: &ReportFile) -> Result<Written, ReportError> {
    let html = html::render(report)?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let written = Written {
        json: dir.join("report.json"),
        csv: dir.join("timeseries.csv"),
        markdown: dir.join("report.md"),
        html: dir.join("report.html"),
        artifacts: Vec::new(),
    };
    write_atomic(&written.json, to_json(report).as_bytes())?;
    write_atomic(&written.csv, csv::timeseries(report).as_bytes())?;
    write_atomic(&written.markdown, markdown::render(report).as_bytes())?;
    write_atomic(&written.html, html.as_bytes())?;
    let mut written = written;
    for run in &report.runs {
        for (name, artifact) in &run.artifacts {
            let file = format!("{}-{}.jsonl", safe(&charts::label(run)), safe(name));
            let mut text = String::with_capacity(artifact.lines.iter().map(|l| l.len() + 1).sum());
            for line in &artifact.lines {
                text.push_str(line);
                text.push('\n');
            }
            let path = dir.join(file);
            write_atomic(&path, text.as_bytes())?;
            written.artifacts.push(path);
        }
    }
    Ok(written)
}

/// Rebuilds every file of a report folder from its `report.json` (given the folder or the file).
pub fn rebuild_dir(dir: &Path) -> Result<Written, ReportError> {
    // `report DIR/report.json` means its folder.
    let dir = if dir.is_file() {
        dir.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    } else {
        dir
    };
    let report = read_json(&dir.join("report.json"))?;
    write_dir(dir, &report)
}

/// A name safe in a file name: letters, digits, `-`, `_` and `.` kept, anything else `_`.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
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
