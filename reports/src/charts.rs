//! The report's charts, drawn with `plotters` as SVG text to be inlined in HTML.
//!
//! Every chart has a title, axis labels with units, and a legend; strategies keep their colour
//! (see [`crate::palette`]). Series are downsampled to at most [`MAX_POINTS`] points, so an hour of
//! per-second data stays small.

use plotters::coord::Shift;
use plotters::prelude::*;
use sim::recorder::SecondRow;
use sim::{ReportFile, RunReport};

use crate::error::ReportError;
use crate::palette::colour;

/// Points per series, at most.
pub const MAX_POINTS: usize = 600;
const SIZE: (u32, u32) = (1100, 380);
/// The legend's column, right of the plot: a legend inside the plot covers data.
const LEGEND_W: u32 = 200;

/// One chart: an id for the page, a title, and the SVG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// A stable id (`tokens`, `in-flight`, …).
    pub id: String,
    /// The title, also drawn in the SVG.
    pub title: String,
    /// The SVG document.
    pub svg: String,
    /// A bar chart's number of slots (one per run); `None` for a line chart. The page marks the
    /// figure with it, so that a browser test can check every slot holds its bar.
    pub slots: Option<usize>,
}

impl Chart {
    /// One sentence on how to read the chart.
    pub fn explanation(&self) -> &'static str {
        if self.id.starts_with("gauge-") {
            return "A figure the strategy reports about itself (queue depth, warm functions, a pacer's rate…), \
                    as it stood at the end of each second.";
        }
        match self.id.as_str() {
            "tokens" => {
                "Tokens the provider charged against its TPM limit (prompt + max_tokens of each admitted request) per \
                 minute, against the limit; thin lines are a controller's own token-rate target (a `*_tpm` gauge). The \
                 bucket starts full, so the first minute can burst above the line."
            }
            "in-flight" => {
                "Concurrent LLM calls; a lighter line shows the strategy's own concurrency limit where it has one."
            }
            "throttling" => {
                "429 responses (solid) and other errors (light) per minute: bursts show where a strategy overshot."
            }
            "llm-latency" => {
                "Share of successful calls that finished within a given time (429s are not latency samples)."
            }
            "file-latency" => "Share of completed files that finished within a given time of arriving.",
            "cancel-latency" => "How long after a cancellation the file's last LLM call ended (p99).",
            "recovery" => {
                "Time after an outage or crash ends until validation is back at 90% of its earlier pace, or after a \
                 limit change until the run keeps pace with 90% of the new limit (the longest of them)."
            }
            "cost" => "LLM tokens at the model's prices (solid) and orchestration units (light), in US dollars.",
            "sweep-throughput" => "Throughput at each value of the swept parameter.",
            "sweep-429-rate" => "Share of requests refused with 429 at each value.",
            "sweep-makespan" => "Time to finish at each value.",
            "sweep-files" => {
                "Files completed (solid) and failed (light) at each value: speed bought with failures shows here."
            }
            _ => "",
        }
    }
}

/// Every chart the report has data for.
pub fn all(report: &ReportFile) -> Result<Vec<Chart>, ReportError> {
    let mut charts = Vec::new();
    if report.sweep.is_some() {
        charts.extend(sweep(report)?);
    } else {
        charts.push(tokens_per_minute(report)?);
        charts.push(in_flight(report)?);
        charts.push(throttling(report)?);
        charts.extend(gauges(report)?);
    }
    charts.push(cdf(
        report,
        "llm-latency",
        "LLM call latency (successful calls)",
        "latency (ms)",
        |r| &r.latency_histogram_ms,
    )?);
    charts.push(cdf(
        report,
        "file-latency",
        "File latency (arrival to completion)",
        "latency (s)",
        |r| &r.file_latency_histogram_s,
    )?);
    if report.runs.iter().any(|r| r.summary.cancel_latency_s.is_some()) {
        charts.push(bars(
            report,
            "cancel-latency",
            "Cancellation latency (p99)",
            "seconds",
            |r| vec![r.summary.cancel_latency_s.map_or(0.0, |c| c.p99)],
        )?);
    }
    if report.runs.iter().any(|r| r.summary.recovery_s.is_some()) {
        charts.push(bars(
            report,
            "recovery",
            "Recovery after outages and crashes (longest)",
            "seconds",
            |r| vec![r.summary.recovery_s.unwrap_or(0.0)],
        )?);
    }
    charts.push(bars(
        report,
        "cost",
        "Cost: LLM (solid) and orchestration (light)",
        "US dollars",
        |r| vec![r.summary.cost.llm_usd, r.summary.cost.orchestration_usd],
    )?);
    Ok(charts)
}

/// A run's label: its strategy, and the swept value in a sweep.
pub fn label(run: &RunReport) -> String {
    match run.sweep_value {
        Some(v) => format!("{} @ {}", run.strategy, trim(v)),
        None => run.strategy.clone(),
    }
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn err<E: std::fmt::Debug>(e: E) -> ReportError {
    ReportError::Chart(format!("{e:?}"))
}

/// Keeps at most `MAX_POINTS` points, combining each run of neighbours with `pick`.
/// A point of a series: (x, y).
type Point = (f64, f64);

fn downsample(points: Vec<Point>, pick: fn(&[Point]) -> Point) -> Vec<Point> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let step = points.len().div_ceil(MAX_POINTS);
    points.chunks(step).map(pick).collect()
}

fn mean(c: &[(f64, f64)]) -> (f64, f64) {
    (c[0].0, c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64)
}

fn max(c: &[(f64, f64)]) -> (f64, f64) {
    (c[0].0, c.iter().map(|p| p.1).fold(0.0, f64::max))
}

/// Sums of `f` over the trailing 60 s, per second, in minutes on x.
fn per_minute(series: &[SecondRow], f: impl Fn(&SecondRow) -> f64) -> Vec<(f64, f64)> {
    let mut acc = 0.0;
    let mut out = Vec::with_capacity(series.len());
    for (i, row) in series.iter().enumerate() {
        acc += f(row);
        if i >= 60 {
            acc -= f(&series[i - 60]);
        }
        out.push((i as f64 / 60.0, acc.max(0.0)));
    }
    out
}

struct Line {
    name: String,
    colour: RGBAColor,
    width: u32,
    points: Vec<(f64, f64)>,
    legend: bool,
}

fn line_chart(id: &str, title: &str, x_desc: &str, y_desc: &str, lines: Vec<Line>) -> Result<Chart, ReportError> {
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(0.0, f64::max)
        .max(1e-9);
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, side) = root.split_horizontally(SIZE.0 - LEGEND_W);
        let mut chart = frame(&plot, title, 0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .light_line_style(BLACK.mix(0.05))
            .x_label_formatter(&|v| compact(*v))
            .y_label_formatter(&|v| compact(*v))
            .draw()
            .map_err(err)?;
        let mut entries = Vec::new();
        for l in lines {
            let style = l.colour.stroke_width(l.width);
            if l.legend {
                entries.push(Entry {
                    name: l.name.clone(),
                    colour: l.colour,
                    width: l.width,
                    bar: false,
                });
            }
            chart.draw_series(LineSeries::new(l.points, style)).map_err(err)?;
        }
        side_legend(&side, &entries)?;
        root.present().map_err(err)?;
    }
    Ok(Chart {
        id: id.to_owned(),
        title: title.to_owned(),
        svg,
        slots: None,
    })
}

/// One chart per strategy gauge (see `RunContext::gauge`), each run's values over time; a gauge
/// that stayed at zero in every run says nothing and gets no chart.
fn gauges(report: &ReportFile) -> Result<Vec<Chart>, ReportError> {
    let names: std::collections::BTreeSet<&str> = report
        .runs
        .iter()
        .flat_map(|r| r.timeseries.iter().flat_map(|row| row.gauges.iter()))
        .filter(|(_, v)| **v != 0.0)
        .map(|(name, _)| &**name)
        .collect();
    names
        .into_iter()
        .map(|name| {
            let lines = report
                .runs
                .iter()
                .filter(|r| r.timeseries.iter().any(|row| row.gauges.contains_key(name)))
                .map(|r| Line {
                    name: label(r),
                    colour: colour(&r.strategy).to_rgba(),
                    width: 2,
                    points: downsample(
                        r.timeseries
                            .iter()
                            .map(|row| (row.second as f64 / 60.0, row.gauges.get(name).copied().unwrap_or(0.0)))
                            .collect(),
                        max,
                    ),
                    legend: true,
                })
                .collect();
            line_chart(
                &format!("gauge-{name}"),
                &format!("Strategy gauge: {}", gauge_title(name)),
                "time (min)",
                name,
                lines,
            )
        })
        .collect()
}

/// What a well-known gauge measures, for its chart's title; other gauges show their name.
fn gauge_title(name: &str) -> String {
    let what = match name {
        "queue_depth" => "messages in the queue (visible, in flight or delayed)",
        "oldest_message_s" => "age of the oldest message in the queue (s)",
        "dlq_depth" => "messages in the dead-letter queue",
        "batches_running" => "Lambda batches running",
        "retry_queue" => "chunks waiting to be retried",
        _ => return name.to_owned(),
    };
    format!("{what} ({name})")
}

type Cartesian<'a> = ChartContext<
    'a,
    SVGBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn frame<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Cartesian<'a>, ReportError> {
    ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(err)
}

/// One line of a legend.
struct Entry {
    name: String,
    colour: RGBAColor,
    width: u32,
    bar: bool,
}

/// The legend, in its own column right of the plot, so that it never covers a line.
fn side_legend(area: &DrawingArea<SVGBackend<'_>, Shift>, entries: &[Entry]) -> Result<(), ReportError> {
    let (_, height) = area.dim_in_pixel();
    let top = 44i32;
    let row = if entries.is_empty() {
        20
    } else {
        ((height as i32 - top - 10) / entries.len() as i32).clamp(10, 20)
    };
    let font = ("sans-serif", 13).into_font().color(&BLACK.mix(0.85));
    for (i, e) in entries.iter().enumerate() {
        let y = top + i as i32 * row;
        if e.bar {
            area.draw(&Rectangle::new([(6, y - 5), (20, y + 5)], e.colour.filled()))
                .map_err(err)?;
        } else {
            area.draw(&PathElement::new(
                vec![(4, y), (24, y)],
                e.colour.stroke_width(e.width.max(2)),
            ))
            .map_err(err)?;
        }
        area.draw(&Text::new(e.name.clone(), (30, y - 7), font.clone()))
            .map_err(err)?;
    }
    Ok(())
}

/// 12,345 → "12.3k".
fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        // Two significant digits, however small: ticks of $0.0001 must not all read `0.00`.
        let decimals = (1 - a.log10().floor() as i32).clamp(1, 12) as usize;
        let text = format!("{v:.decimals$}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn tokens_per_minute(report: &ReportFile) -> Result<Chart, ReportError> {
    let mut lines: Vec<Line> = Vec::new();
    for r in &report.runs {
        // Reports written before the `charged` column carry only the tokens used.
        let has_charged = r.timeseries.iter().any(|row| row.charged > 0);
        let pick = move |row: &SecondRow| if has_charged { row.charged } else { row.tokens } as f64;
        lines.push(Line {
            name: label(r),
            colour: colour(&r.strategy).to_rgba(),
            width: 2,
            points: downsample(per_minute(&r.timeseries, pick), mean),
            legend: true,
        });
        // A controller's token-rate target, drawn thin in the run's colour.
        let targets: std::collections::BTreeSet<&str> = r
            .timeseries
            .iter()
            .flat_map(|row| row.gauges.keys().map(|k| &**k))
            .filter(|g| g.ends_with("_tpm"))
            .collect();
        for g in targets {
            let points = r
                .timeseries
                .iter()
                .map(|row| (row.second as f64 / 60.0, row.gauges.get(g).copied().unwrap_or(0.0)))
                .collect();
            lines.push(Line {
                name: format!("{} {g}", label(r)),
                colour: colour(&r.strategy).mix(0.5),
                width: 1,
                points: downsample(points, max),
                legend: true,
            });
        }
    }
    if let Some(tpm) = report.scenario.tpm {
        let end = lines
            .iter()
            .flat_map(|l| l.points.last())
            .map(|p| p.0)
            .fold(0.0, f64::max);
        lines.push(Line {
            name: "TPM limit".into(),
            colour: BLACK.mix(0.7),
            width: 1,
            points: tpm_steps(report, tpm, end),
            legend: true,
        });
    }
    line_chart(
        "tokens",
        "Tokens charged per minute (trailing 60 s) against the TPM limit",
        "time (min)",
        "tokens per minute",
        lines,
    )
}

/// The TPM limit over time, following the timeline's `limits` changes.
fn tpm_steps(report: &ReportFile, initial: u64, end_min: f64) -> Vec<(f64, f64)> {
    let mut pts = vec![(0.0, initial as f64)];
    let mut current = initial as f64;
    for t in &report.scenario.timeline {
        if let Some(tpm) = t
            .action
            .get("limits")
            .and_then(|l| l.get("tpm"))
            .and_then(|v| v.as_f64())
        {
            let x = t.at_s / 60.0;
            pts.push((x, current));
            pts.push((x, tpm));
            current = tpm;
        }
    }
    pts.push((end_min.max(pts.last().map_or(0.0, |p| p.0)), current));
    pts
}

fn in_flight(report: &ReportFile) -> Result<Chart, ReportError> {
    let mut lines = Vec::new();
    for r in &report.runs {
        let c = colour(&r.strategy);
        let pts = r
            .timeseries
            .iter()
            .map(|row| (row.second as f64 / 60.0, f64::from(row.in_flight_max)))
            .collect();
        lines.push(Line {
            name: label(r),
            colour: c.to_rgba(),
            width: 2,
            points: downsample(pts, max),
            legend: true,
        });
        if r.timeseries.iter().any(|row| row.concurrency_limit.is_some()) {
            let pts = r
                .timeseries
                .iter()
                .map(|row| (row.second as f64 / 60.0, f64::from(row.concurrency_limit.unwrap_or(0))))
                .collect();
            lines.push(Line {
                name: format!("{} limit", label(r)),
                colour: c.mix(0.45),
                width: 1,
                points: downsample(pts, max),
                legend: true,
            });
        }
    }
    line_chart(
        "in-flight",
        "LLM calls in flight (and the strategy's limit)",
        "time (min)",
        "calls in flight",
        lines,
    )
}

fn throttling(report: &ReportFile) -> Result<Chart, ReportError> {
    let mut lines = Vec::new();
    for r in &report.runs {
        let c = colour(&r.strategy);
        let t = downsample(per_minute(&r.timeseries, |row| f64::from(row.throttled)), mean);
        lines.push(Line {
            name: format!("{} 429s", label(r)),
            colour: c.to_rgba(),
            width: 2,
            points: t,
            legend: true,
        });
        let e = downsample(per_minute(&r.timeseries, |row| f64::from(row.errors)), mean);
        lines.push(Line {
            name: format!("{} errors", label(r)),
            colour: c.mix(0.4),
            width: 1,
            points: e,
            legend: true,
        });
    }
    line_chart(
        "throttling",
        "429s and errors per minute (trailing 60 s)",
        "time (min)",
        "responses per minute",
        lines,
    )
}

fn cdf(
    report: &ReportFile,
    id: &str,
    title: &str,
    x_desc: &str,
    hist: fn(&RunReport) -> &Vec<(f64, u64)>,
) -> Result<Chart, ReportError> {
    let lines = report
        .runs
        .iter()
        .map(|r| {
            let h = hist(r);
            let total = h.iter().map(|b| b.1).sum::<u64>().max(1) as f64;
            // A CDF is a step function: flat until the next value, then up.
            let mut acc = 0u64;
            let mut pts = vec![(h.first().map_or(0.0, |b| b.0), 0.0)];
            for &(v, n) in h {
                pts.push((v, acc as f64 / total * 100.0));
                acc += n;
                pts.push((v, acc as f64 / total * 100.0));
            }
            Line {
                name: label(r),
                colour: run_colour(report, r),
                width: 2,
                points: downsample(pts, max),
                legend: true,
            }
        })
        .collect();
    line_chart(id, title, x_desc, "share of calls or files at or below (%)", lines)
}

/// One bar per run, named under it; with two values, the second is stacked on the first,
/// lighter. Each run has a slot of its own, none empty; when every value is 0 the axis runs to 1
/// and the title says so (an axis from 0 to 0 repeats one label).
fn bars(
    report: &ReportFile,
    id: &str,
    title: &str,
    y_desc: &str,
    values: impl Fn(&RunReport) -> Vec<f64>,
) -> Result<Chart, ReportError> {
    let n = report.runs.len().max(1);
    let vals: Vec<Vec<f64>> = report.runs.iter().map(&values).collect();
    let top = vals.iter().map(|v| v.iter().sum::<f64>()).fold(0.0, f64::max);
    let (y_max, title) = if top > 0.0 {
        (top * 1.15, title.to_owned())
    } else {
        (1.0, format!("{title}: 0 for every run"))
    };
    let labels: Vec<String> = report.runs.iter().map(label).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, _) = root.split_horizontally(SIZE.0 - LEGEND_W);
        let mut chart = ChartBuilder::on(&plot)
            .caption(&title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n as f64, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc(if report.sweep.is_some() { "run" } else { "strategy" })
            .y_desc(y_desc)
            .y_label_formatter(&|v| compact(*v))
            .draw()
            .map_err(err)?;
        // At most ~120 px of bar per slot, centred.
        let (x0, _) = chart.backend_coord(&(0.0, 0.0));
        let (x1, _) = chart.backend_coord(&(1.0, 0.0));
        let slot_px = f64::from((x1 - x0).max(1));
        let half = (0.5 * (120.0 / slot_px).min(0.7)).max(0.05);
        for (i, run) in report.runs.iter().enumerate() {
            let c = run_colour(report, run);
            let mut base = 0.0;
            for (k, v) in vals[i].iter().enumerate() {
                let style = if k == 0 { c.filled() } else { c.mix(0.4).filled() };
                let centre = i as f64 + 0.5;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(centre - half, base), (centre + half, base + v)],
                        style,
                    )))
                    .map_err(err)?;
                base += v;
            }
        }
        // Each run's name under its slot.
        let font = ("sans-serif", 13).into_font().color(&BLACK.mix(0.85));
        for (i, name) in labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let pos = plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            );
            plot.draw(&Text::new(name.clone(), (x, y + 6), font.clone().pos(pos)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Chart {
        id: id.to_owned(),
        title,
        svg,
        slots: Some(report.runs.len()),
    })
}

fn sweep(report: &ReportFile) -> Result<Vec<Chart>, ReportError> {
    let param = report.sweep.as_ref().map_or("value", |s| s.param.as_str()).to_owned();
    let mut strategies: Vec<&str> = report.runs.iter().map(|r| r.strategy.as_str()).collect();
    strategies.dedup();
    let series = |f: fn(&RunReport) -> f64| -> Vec<Line> {
        let mut names = strategies.clone();
        names.sort();
        names.dedup();
        names
            .iter()
            .map(|s| Line {
                name: (*s).to_owned(),
                colour: colour(s).to_rgba(),
                width: 2,
                points: report
                    .runs
                    .iter()
                    .filter(|r| r.strategy == *s)
                    .map(|r| (r.sweep_value.unwrap_or(0.0), f(r)))
                    .collect(),
                legend: true,
            })
            .collect()
    };
    Ok(vec![
        line_chart(
            "sweep-throughput",
            &format!("Throughput against {param}"),
            &param,
            "tokens per minute",
            series(|r| r.summary.throughput_tokens_per_min),
        )?,
        line_chart(
            "sweep-429-rate",
            &format!("429 rate against {param}"),
            &param,
            "429s per request (%)",
            series(|r| 100.0 * r.summary.llm_throttled as f64 / r.summary.llm_requests.max(1) as f64),
        )?,
        line_chart(
            "sweep-makespan",
            &format!("Makespan against {param}"),
            &param,
            "makespan (min)",
            series(|r| r.summary.makespan_s / 60.0),
        )?,
        line_chart(
            "sweep-files",
            &format!("Files completed and failed against {param}"),
            &param,
            "files",
            {
                let completed = series(|r| r.summary.files_completed as f64);
                let failed = series(|r| r.summary.files_failed as f64);
                let mut lines = Vec::with_capacity(2 * completed.len());
                for (mut c, mut f) in completed.into_iter().zip(failed) {
                    c.name = format!("{} completed", c.name);
                    f.name = format!("{} failed", f.name);
                    f.colour = f.colour.mix(0.4);
                    lines.push(c);
                    lines.push(f);
                }
                lines
            },
        )?,
    ])
}

/// A run's colour: its strategy's, lighter for later values of a sweep, so that the runs of one
/// strategy stay apart in a sweep's distribution charts.
fn run_colour(report: &ReportFile, run: &RunReport) -> RGBAColor {
    let base = colour(&run.strategy);
    let Some(sweep) = &report.sweep else {
        return base.to_rgba();
    };
    let i = sweep
        .values
        .iter()
        .position(|v| Some(*v) == run.sweep_value)
        .unwrap_or(0);
    let n = sweep.values.len().max(1);
    base.mix(1.0 - 0.7 * i as f64 / n as f64)
}
