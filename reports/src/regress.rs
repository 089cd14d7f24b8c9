//! The regression gate: compare a report against a baseline of the same scenario and seed, and say
//! which watched metrics got worse by more than a tolerance.

use sim::{ReportFile, Summary};

use crate::charts::label;

/// Which way a metric should move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Higher is better (throughput, efficiency).
    Higher,
    /// Lower is better (makespan, 429s, latencies, waste, cost).
    Lower,
}

/// A metric the gate can watch.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Its name on the command line.
    pub name: &'static str,
    /// Which way is better.
    pub better: Better,
    /// Its value in a summary (`None`: the run has no such figure, e.g. no cancellations).
    pub value: fn(&Summary) -> Option<f64>,
}

/// Every metric, the default-watched ones first.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "completion",
        better: Better::Higher,
        value: |s| Some(s.completion),
    },
    Metric {
        name: "throughput",
        better: Better::Higher,
        value: |s| Some(s.throughput_tokens_per_min),
    },
    Metric {
        name: "efficiency",
        better: Better::Higher,
        value: |s| Some(s.efficiency),
    },
    Metric {
        name: "makespan",
        better: Better::Lower,
        value: |s| Some(s.makespan_s),
    },
    Metric {
        name: "429s",
        better: Better::Lower,
        value: |s| Some(s.llm_throttled as f64),
    },
    Metric {
        name: "cancel-latency",
        better: Better::Lower,
        value: |s| s.cancel_latency_s.map(|c| c.p99),
    },
    Metric {
        name: "recovery",
        better: Better::Lower,
        value: |s| s.recovery_s,
    },
    Metric {
        name: "backlog",
        better: Better::Lower,
        value: |s| s.backlog_cleared_s,
    },
    Metric {
        name: "files-completed",
        better: Better::Higher,
        value: |s| Some(s.files_completed as f64),
    },
    Metric {
        name: "tokens-wasted",
        better: Better::Lower,
        value: |s| Some(s.tokens_wasted as f64),
    },
    Metric {
        name: "p99-latency",
        better: Better::Lower,
        value: |s| Some(s.latency_ms.p99),
    },
    Metric {
        name: "cost",
        better: Better::Lower,
        value: |s| Some(s.cost.total_usd),
    },
    Metric {
        name: "limit-utilization",
        better: Better::Higher,
        value: |s| Some(s.limit_utilization),
    },
];

/// The metrics watched when none are named.
pub const DEFAULT_METRICS: &[&str] = &[
    "completion",
    "throughput",
    "efficiency",
    "makespan",
    "429s",
    "cancel-latency",
];

/// One metric of one run, compared.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The run (strategy, and value in a sweep).
    pub run: String,
    /// The metric.
    pub metric: String,
    /// In the baseline.
    pub baseline: f64,
    /// Now.
    pub current: f64,
    /// How much worse, relative to the baseline (0 when not worse; infinite when the baseline
    /// was 0 and it got worse).
    pub worse_by: f64,
    /// Whether `worse_by` exceeds the tolerance.
    pub regressed: bool,
}

/// The result of a comparison.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Every watched metric of every run present in both.
    pub changes: Vec<Change>,
    /// Runs of the baseline missing from the current report.
    pub missing: Vec<String>,
}

impl Comparison {
    /// Whether the gate fails: a watched metric regressed, or a run disappeared.
    pub fn failed(&self) -> bool {
        !self.missing.is_empty() || self.changes.iter().any(|c| c.regressed)
    }
}

/// Why two reports cannot be compared.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegressError {
    /// Different scenarios or seeds: the figures are not comparable.
    #[error(
        "the reports are of different runs: baseline is scenario `{0}` seed {1}, current is scenario `{2}` seed {3}"
    )]
    Mismatch(String, u64, String, u64),
    /// A metric name nobody knows.
    #[error(
        "unknown metric `{0}`; the metrics are: {1}, or a strategy's own figure from the baseline's \
         `strategy_metrics` (lower is better; append `:higher` when higher is better)"
    )]
    UnknownMetric(String, String),
}

/// Compares `current` against `baseline` on `metrics` (default: [`DEFAULT_METRICS`]); a metric
/// regresses when it got worse by more than `tolerance` (0.05 = 5%) relative to the baseline.
pub fn compare(
    baseline: &ReportFile,
    current: &ReportFile,
    metrics: &[String],
    tolerance: f64,
) -> Result<Comparison, RegressError> {
    let (b, c) = (&baseline.scenario, &current.scenario);
    if b.name != c.name || b.seed != c.seed {
        return Err(RegressError::Mismatch(b.name.clone(), b.seed, c.name.clone(), c.seed));
    }
    let names: Vec<&str> = if metrics.is_empty() {
        DEFAULT_METRICS.to_vec()
    } else {
        metrics.iter().map(String::as_str).collect()
    };
    let watched = names
        .iter()
        .map(|n| watch(n, baseline))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Comparison::default();
    for base in &baseline.runs {
        let name = label(base);
        let Some(cur) = current.runs.iter().find(|r| label(r) == name) else {
            out.missing.push(name);
            continue;
        };
        for m in &watched {
            let (Some(bv), Some(cv)) = (m.value(&base.summary), m.value(&cur.summary)) else {
                continue;
            };
            let delta = match m.better {
                Better::Higher => bv - cv,
                Better::Lower => cv - bv,
            };
            let worse_by = if delta <= 0.0 {
                0.0
            } else if bv == 0.0 {
                f64::INFINITY
            } else {
                delta / bv.abs()
            };
            out.changes.push(Change {
                run: name.clone(),
                metric: m.name.clone(),
                baseline: bv,
                current: cv,
                worse_by,
                regressed: worse_by > tolerance,
            });
        }
    }
    Ok(out)
}

/// A watched metric: a built-in one, or a strategy's own figure.
struct Watched {
    name: String,
    better: Better,
    builtin: Option<fn(&Summary) -> Option<f64>>,
}

impl Watched {
    fn value(&self, s: &Summary) -> Option<f64> {
        match self.builtin {
            Some(f) => f(s),
            None => s.strategy_metrics.get(&self.name).copied(),
        }
    }
}

/// Resolves a metric name: a built-in metric, or a strategy metric the baseline carries
/// (`NAME` when lower is better, `NAME:higher` when higher is).
fn watch(n: &str, baseline: &ReportFile) -> Result<Watched, RegressError> {
    if let Some(m) = METRICS.iter().find(|m| m.name == n) {
        return Ok(Watched {
            name: m.name.to_owned(),
            better: m.better,
            builtin: Some(m.value),
        });
    }
    let (name, better) = match n.strip_suffix(":higher") {
        Some(name) => (name, Better::Higher),
        None => (n.strip_suffix(":lower").unwrap_or(n), Better::Lower),
    };
    if baseline
        .runs
        .iter()
        .any(|r| r.summary.strategy_metrics.contains_key(name))
    {
        return Ok(Watched {
            name: name.to_owned(),
            better,
            builtin: None,
        });
    }
    Err(RegressError::UnknownMetric(
        n.to_owned(),
        METRICS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
    ))
}

/// The comparison as a plain-text table.
pub fn table(cmp: &Comparison, tolerance: f64) -> String {
    let mut rows = vec![
        ["run", "metric", "baseline", "current", "change", "verdict"]
            .map(String::from)
            .to_vec(),
    ];
    for c in &cmp.changes {
        let change = if c.baseline == 0.0 {
            if c.current == 0.0 {
                "0%".to_owned()
            } else {
                "new".to_owned()
            }
        } else {
            format!("{:+.1}%", (c.current - c.baseline) / c.baseline.abs() * 100.0)
        };
        let verdict = if c.regressed {
            format!("REGRESSED (worse by more than {:.1}%)", tolerance * 100.0)
        } else if c.worse_by > 0.0 {
            "worse, within tolerance".to_owned()
        } else if c.current != c.baseline {
            "better".to_owned()
        } else {
            "same".to_owned()
        };
        rows.push(vec![
            c.run.clone(),
            c.metric.clone(),
            num(c.baseline),
            num(c.current),
            change,
            verdict,
        ]);
    }
    for m in &cmp.missing {
        rows.push(vec![
            m.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "MISSING from the current report".into(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{v:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Parses a tolerance: `5%` or `0.05`. A bare number above 1 is refused: `5` would be a 500%
/// tolerance, which turns the gate off, and was surely meant as `5%`.
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let percent = t.strip_suffix('%');
    let v = match percent {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("`{s}` is not a tolerance: write e.g. `5%` or `0.05`"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("`{s}` must be a tolerance of 0% or more"));
    }
    if percent.is_none() && v > 1.0 {
        return Err(format!(
            "`{s}` as a fraction is a {:.0}% tolerance, which lets anything pass: write `{s}%` for {s} percent",
            v * 100.0
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::parse_tolerance;

    #[test]
    fn a_bare_number_above_one_is_refused_with_the_percent_it_meant() {
        // `--max-drop 5` once read as 500% and turned the regression gate off.
        let err = parse_tolerance("5").expect_err("refused");
        assert!(err.contains("`5%`"), "{err}");
        assert_eq!(parse_tolerance("5%"), Ok(0.05));
        assert_eq!(parse_tolerance("0.05"), Ok(0.05));
        assert_eq!(parse_tolerance("1"), Ok(1.0));
        assert!(parse_tolerance("150%").is_ok(), "a percent above 100 is explicit");
        assert!(parse_tolerance("-1%").is_err());
    }
}
