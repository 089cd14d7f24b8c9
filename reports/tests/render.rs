//! The report folder as a person and a program see it: schema-valid JSON, a self-contained HTML
//! page whose charts draw in a real browser, a Markdown reading, and the regression gate.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use reports::regress::{compare, parse_tolerance};
use sim::ReportFile;

fn schema() -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("report.schema.json"))
        .expect("committed schema");
    serde_json::from_str(&text).expect("the schema is JSON")
}

/// The errors of validating `report` against the committed schema.
pub fn schema_errors(report: &serde_json::Value) -> Vec<String> {
    let schema = schema();
    let v = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    v.iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn as_value(r: &ReportFile) -> serde_json::Value {
    serde_json::from_str(&reports::to_json(r)).expect("reports are JSON")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("orchbench-render-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn reports_validate_against_the_committed_schema_and_broken_ones_do_not() {
    for r in [
        common::one_strategy(),
        common::five_strategies(),
        common::cancelled_and_failed(),
    ] {
        let errors = schema_errors(&as_value(&r));
        assert!(errors.is_empty(), "{errors:#?}");
    }
    // The schema is not vacuous: a renamed pinned field, a negative count, and an unknown event
    // kind are each caught.
    let good = as_value(&common::one_strategy());
    let mut renamed = good.clone();
    let summary = renamed["runs"][0]["summary"].as_object_mut().expect("object");
    let v = summary.remove("makespan_s").expect("present");
    summary.insert("makespan".into(), v);
    assert!(!schema_errors(&renamed).is_empty());
    let mut negative = good.clone();
    negative["runs"][0]["summary"]["llm_requests"] = serde_json::json!(-1);
    assert!(!schema_errors(&negative).is_empty());
    let mut kind = good;
    kind["runs"][0]["events"][0]["kind"] = serde_json::json!("exploded");
    assert!(!schema_errors(&kind).is_empty());
}

#[test]
fn html_is_self_contained_and_has_every_chart() {
    for (r, extra) in [
        (common::one_strategy(), vec![]),
        (common::five_strategies(), vec![]),
        (common::cancelled_and_failed(), vec!["cancel-latency", "recovery"]),
    ] {
        let html = reports::html::render(&r).expect("renders");
        // (The SVG namespace `xmlns="http://www.w3.org/2000/svg"` is a name, not a load.)
        for banned in [
            "<script src",
            "<link",
            "@import",
            "url(",
            "src=\"http",
            "href=\"http",
            "<img",
            "<iframe",
        ] {
            assert!(
                !html.contains(banned),
                "report.html must not load anything: found {banned}"
            );
        }
        for id in [
            "tokens",
            "in-flight",
            "throttling",
            "llm-latency",
            "file-latency",
            "cost",
        ]
        .iter()
        .chain(extra.iter())
        {
            assert!(html.contains(&format!("id=\"chart-{id}\"")), "missing chart {id}");
        }
        for run in &r.runs {
            assert!(html.contains(&run.strategy), "the table names {}", run.strategy);
        }
        assert!(html.contains("a small &lt;scenario&gt; &amp; co"), "text is escaped");
    }
}

#[test]
fn a_strategy_keeps_its_colour_in_every_chart() {
    let r = common::five_strategies();
    let charts = reports::charts::all(&r).expect("charts");
    for name in ["fixed", "stepfn", "sqs", "adaptive", "cookbook"] {
        let rgb = reports::palette::colour(name);
        let svg_colour = format!("#{:02X}{:02X}{:02X}", rgb.0, rgb.1, rgb.2);
        for c in &charts {
            assert!(
                c.svg.to_uppercase().contains(&svg_colour),
                "{name} ({svg_colour}) missing from chart {}",
                c.id
            );
        }
    }
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|b| {
        let out = Command::new("which").arg(b).output().ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
}

/// Loads `html` in headless Chromium; returns the DOM after scripts ran, and the browser's log.
fn load_in_chromium(browser: &Path, html: &Path, name: &str) -> (String, String) {
    let profile = temp_dir(&format!("profile-{name}"));
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            // The width the layout must fit (a laptop's browser window).
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium starts");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_chart_draws_in_a_real_browser_without_console_errors() {
    let Some(browser) = chromium() else {
        // .ci/run installs Debian's chromium; in CI its absence is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing in CI: .ci/run should have installed it"
        );
        eprintln!("SKIPPED: no chromium on this machine (apt-get install chromium to run this test)");
        return;
    };
    let mut sweep = common::one_strategy();
    for (i, run) in sweep.runs.iter_mut().enumerate() {
        run.sweep_value = Some(i as f64 + 1.0);
    }
    sweep.sweep = Some(sim::report::SweepInfo {
        param: "max-parallelism".into(),
        values: vec![1.0],
    });
    // Every run recovered at once: an all-zero bar chart.
    let mut zeros = common::five_strategies();
    for run in &mut zeros.runs {
        run.summary.recovery_s = Some(0.0);
    }
    for (name, r) in [
        ("one", common::one_strategy()),
        ("five", common::five_strategies()),
        ("cancelled", common::cancelled_and_failed()),
        ("sweep", sweep),
        ("zeros", zeros),
    ] {
        let dir = temp_dir(name);
        let written = reports::write_dir(&dir, &r).expect("writes");
        let (dom, log) = load_in_chromium(&browser, &written.html, name);
        let attr = |a: &str| -> Option<u32> {
            let i = dom.find(&format!("{a}=\""))? + a.len() + 2;
            dom[i..].split('"').next()?.parse().ok()
        };
        let (total, drawn) = (attr("data-charts-total"), attr("data-charts-drawn"));
        assert!(
            total.is_some_and(|t| t >= 3),
            "{name}: the page's self-check did not run (a script error?)\n{log}"
        );
        assert_eq!(drawn, total, "{name}: some chart has an empty plot area");
        // The layout classes a newcomer found at 1,400 px: a table wider than the page, an axis
        // repeating one label (`0.00` five times), a bar chart with a slot and no bar.
        assert_eq!(
            attr("data-wide-tables"),
            Some(0),
            "{name}: a table is wider than the page"
        );
        // The charts an axis repeats a label on, by id, for the message.
        let ids: Vec<&str> = dom
            .match_indices("data-repeated-labels=\"yes\"")
            .map(|(i, _)| {
                dom[..i]
                    .rsplit("id=\"")
                    .next()
                    .unwrap_or("")
                    .split('"')
                    .next()
                    .unwrap_or("")
            })
            .collect();
        assert_eq!(
            attr("data-repeated-labels"),
            Some(0),
            "{name}: an axis repeats a label: {ids:?}"
        );
        assert_eq!(
            attr("data-empty-slots"),
            Some(0),
            "{name}: a bar chart has an empty slot"
        );
        let console: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
            .collect();
        assert!(console.is_empty(), "{name}: console messages: {console:#?}");
    }
}

#[test]
fn markdown_says_who_finished_first_and_who_wasted_most() {
    let r = common::five_strategies();
    let md = reports::markdown::render(&r);
    let first = r
        .runs
        .iter()
        .min_by(|a, b| a.summary.makespan_s.total_cmp(&b.summary.makespan_s))
        .expect("runs");
    assert!(md.contains(&format!("**{}** finished first", first.strategy)), "{md}");
    assert!(md.contains("| strategy | done | makespan |"));
    for run in &r.runs {
        assert!(md.contains(&format!("| {} |", run.strategy)));
    }
    let cancelled = reports::markdown::render(&common::cancelled_and_failed());
    assert!(cancelled.contains("stopped cancelled work within"), "{cancelled}");
    assert!(cancelled.contains("to recover its pace"), "{cancelled}");
}

#[test]
fn regress_watches_completion_by_default_and_strategy_figures_by_name() {
    // A run that completes less of its work regresses even when it got faster: completion is
    // watched first, by default.
    let base = common::one_strategy();
    let mut gave_up = base.clone();
    gave_up.runs[0].summary.completion = base.runs[0].summary.completion * 0.5;
    gave_up.runs[0].summary.makespan_s *= 0.5;
    let cmp = compare(&base, &gave_up, &[], 0.05).expect("comparable");
    assert!(
        cmp.changes.iter().any(|c| c.metric == "completion" && c.regressed),
        "{cmp:?}"
    );

    // A strategy's own figure is watched by name: lower is better unless `:higher` says so.
    let mut with = base.clone();
    with.runs[0]
        .summary
        .strategy_metrics
        .insert("duplicate_calls".into(), 10.0);
    let mut more = with.clone();
    more.runs[0]
        .summary
        .strategy_metrics
        .insert("duplicate_calls".into(), 20.0);
    assert!(
        compare(&with, &more, &["duplicate_calls".into()], 0.05)
            .expect("known")
            .failed()
    );
    assert!(
        !compare(&with, &more, &["duplicate_calls:higher".into()], 0.05)
            .expect("known")
            .failed()
    );
    let err = compare(&base, &more, &["duplicate_calls".into()], 0.05).expect_err("the baseline lacks it");
    assert!(err.to_string().contains("unknown metric `duplicate_calls`"), "{err}");
}

#[test]
fn regress_passes_identical_reports_and_fails_a_worse_one() {
    let base = common::one_strategy();
    let same = compare(&base, &base, &[], 0.05).expect("comparable");
    assert!(!same.failed());
    assert_eq!(
        same.changes.len(),
        5,
        "completion, throughput, efficiency, makespan, 429s (no cancellations here)"
    );

    let mut worse = base.clone();
    worse.runs[0].summary.throughput_tokens_per_min *= 0.9;
    worse.runs[0].summary.makespan_s *= 1.03;
    let cmp = compare(&base, &worse, &[], 0.05).expect("comparable");
    let regressed: Vec<&str> = cmp
        .changes
        .iter()
        .filter(|c| c.regressed)
        .map(|c| c.metric.as_str())
        .collect();
    assert_eq!(
        regressed,
        ["throughput"],
        "a 10% drop exceeds 5%; a 3% longer makespan does not"
    );
    assert!(cmp.failed());
    assert!(
        !compare(&base, &worse, &["makespan".into()], 0.05)
            .expect("comparable")
            .failed()
    );
    assert!(
        compare(&base, &worse, &["makespan".into()], 0.02)
            .expect("comparable")
            .failed()
    );
}

#[test]
fn regress_refuses_different_runs_and_unknown_metrics_and_flags_missing_runs() {
    let base = common::one_strategy();
    let mut other = base.clone();
    other.scenario.seed += 1;
    assert!(
        compare(&base, &other, &[], 0.05)
            .expect_err("different seed")
            .to_string()
            .contains("different runs")
    );
    let e = compare(&base, &base, &["speed".into()], 0.05)
        .expect_err("unknown metric")
        .to_string();
    assert!(e.contains("speed") && e.contains("throughput"), "{e}");
    let mut empty = base.clone();
    empty.runs.clear();
    let cmp = compare(&base, &empty, &[], 0.05).expect("comparable");
    assert_eq!(cmp.missing, ["fixed"]);
    assert!(cmp.failed());
}

#[test]
fn tolerances_read_as_percent_or_fraction() {
    assert_eq!(parse_tolerance("5%"), Ok(0.05));
    assert_eq!(parse_tolerance("0.05"), Ok(0.05));
    assert!(parse_tolerance("five").is_err());
    assert!(parse_tolerance("-1%").is_err());
}

#[test]
fn report_dir_round_trips_through_report_json() {
    let r = common::cancelled_and_failed();
    let dir = temp_dir("roundtrip");
    reports::write_dir(&dir, &r).expect("writes");
    let html_before = std::fs::read_to_string(dir.join("report.html")).expect("html");
    std::fs::remove_file(dir.join("report.html")).expect("rm");
    reports::rebuild_dir(&dir).expect("rebuilds");
    assert_eq!(
        std::fs::read_to_string(dir.join("report.html")).expect("html"),
        html_before
    );
    assert_eq!(reports::read_json(&dir.join("report.json")).expect("reads"), r);
}

#[test]
fn a_strategys_gauges_metrics_and_artifacts_reach_every_output() {
    // The strategy reports a queue-depth gauge, a delivery count and a history line per chunk.
    // Each must come out: in the schema-valid JSON, as a CSV column, as a chart, and as a JSON
    // Lines file beside the report.
    let r = common::with_strategy_figures();
    let errors = schema_errors(&as_value(&r));
    assert!(errors.is_empty(), "{errors:#?}");
    let chunks = r.runs[0].summary.chunks_total as f64;
    assert_eq!(r.runs[0].summary.strategy_metrics["deliveries"], chunks);
    // The figures table of the HTML page and the Markdown carries it, with its value.
    let html = reports::html::render(&r).expect("renders");
    let md = reports::markdown::render(&r);
    for page in [&html, &md] {
        assert!(
            page.contains("Strategy figures") && page.contains("deliveries"),
            "no figures table"
        );
        assert!(page.contains(&format!("{chunks}")), "the value {chunks}");
    }

    let csv = reports::csv::timeseries(&r);
    let header: Vec<&str> = csv.lines().next().expect("a header").split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "gauge:queue_depth")
        .expect("a gauge column");
    let depths: Vec<f64> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(col).and_then(|v| v.parse().ok()))
        .collect();
    assert!(
        depths.iter().any(|d| *d > 1.0),
        "the queue was deeper than one at some second"
    );

    let charts = reports::charts::all(&r).expect("charts");
    assert!(
        charts.iter().any(|c| c.id == "gauge-queue_depth"),
        "a chart of the gauge"
    );
    // A gauge that stayed at zero says nothing: no empty chart for it.
    let mut idle = r.clone();
    for row in &mut idle.runs[0].timeseries {
        row.gauges.insert("idle".into(), 0.0);
    }
    let charts = reports::charts::all(&idle).expect("charts");
    assert!(!charts.iter().any(|c| c.id == "gauge-idle"));

    let dir = temp_dir("figures");
    let written = reports::write_dir(&dir, &r).expect("writes");
    assert_eq!(written.artifacts, vec![dir.join("figures-history.jsonl")]);
    let lines = std::fs::read_to_string(&written.artifacts[0]).expect("the artifact");
    assert_eq!(lines.lines().count() as f64, chunks);
    for line in lines.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("each line is JSON");
    }
}

#[test]
fn the_tokens_chart_draws_what_the_limit_charged_and_a_controllers_target_against_it() {
    // A run whose requests were charged 1,900 tokens a second while they used 1,000, with a
    // pacer target of 50,000 a minute. The chart must plot the charge (114,000 a minute at its
    // peak, which sets the y axis: "114k" cannot come from the 60,000 used) and a thin line for
    // the `_tpm` gauge, named in the legend.
    let mut r = common::with_strategy_figures();
    for row in &mut r.runs[0].timeseries {
        row.tokens = 1_000;
        row.charged = 1_900;
        row.gauges.insert("pacer_tpm".into(), 50_000.0);
    }
    let charts = reports::charts::all(&r).expect("charts");
    let tokens = charts.iter().find(|c| c.id == "tokens").expect("the tokens chart");
    assert!(tokens.svg.contains("pacer_tpm"), "the target's line is in the legend");
    let y_labels_reach_the_charge = ["100k", "110k", "120k"].iter().any(|l| tokens.svg.contains(l));
    assert!(y_labels_reach_the_charge, "the y axis spans the charged tokens");
    // Without the column (a report written before it), the chart falls back to tokens used.
    for row in &mut r.runs[0].timeseries {
        row.charged = 0;
    }
    let charts = reports::charts::all(&r).expect("charts");
    let tokens = charts.iter().find(|c| c.id == "tokens").expect("the tokens chart");
    assert!(!["100k", "110k", "120k"].iter().any(|l| tokens.svg.contains(l)));
}

#[test]
fn a_cdf_is_drawn_as_steps_and_a_run_without_successes_shows_no_percentile() {
    let r = common::five_strategies();
    let charts = reports::charts::all(&r).expect("draws");
    let cdf = charts
        .iter()
        .find(|c| c.id == "file-latency")
        .expect("a file-latency chart");
    // A step function has vertical risers: consecutive points sharing their x.
    let points: Vec<(i64, i64)> = cdf
        .svg
        .split("points=\"")
        .skip(1)
        .flat_map(|p| {
            p.split('"')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
        })
        .filter_map(|xy| {
            let (x, y) = xy.split_once(',')?;
            Some((x.parse().ok()?, y.parse().ok()?))
        })
        .collect();
    assert!(
        points.windows(2).any(|w| w[0].0 == w[1].0 && w[0].1 != w[1].1),
        "no vertical step in the CDF"
    );
    let mut none = common::one_strategy();
    for b in &mut none.runs[0].latency_histogram_ms {
        b.1 = 0;
    }
    none.runs[0].summary.files_completed = 0;
    let (_, body) = reports::table::rows(&none);
    let cells = &body[0].1;
    // `p99 call` and `p99 file` say "–", not "0ms", when nothing succeeded.
    assert_eq!(&cells[cells.len() - 3..cells.len() - 1], ["–", "–"], "{cells:?}");
}

#[test]
fn a_sweeps_bars_tell_its_runs_apart_by_colour() {
    // In a sweep every run of a strategy shared one colour, so the cost bars could not be told
    // apart; each run now has its own shade.
    let mut sweep = common::one_strategy();
    let run = sweep.runs[0].clone();
    sweep.runs = (0..3)
        .map(|i| {
            let mut r = run.clone();
            r.sweep_value = Some(f64::from(i) + 1.0);
            r
        })
        .collect();
    sweep.sweep = Some(sim::report::SweepInfo {
        param: "max-parallelism".into(),
        values: vec![1.0, 2.0, 3.0],
    });
    let charts = reports::charts::all(&sweep).expect("draws");
    let cost = charts.iter().find(|c| c.id == "cost").expect("a cost chart");
    let fills: std::collections::BTreeSet<(&str, &str)> = cost
        .svg
        .split("<rect")
        .skip(2) // the background
        .filter_map(|r| {
            let attrs = r.split("/>").next()?;
            let fill = attrs.split("fill=\"").nth(1)?.split('"').next()?;
            let opacity = attrs.split("opacity=\"").nth(1)?.split('"').next()?;
            Some((fill, opacity))
        })
        .filter(|(f, _)| *f != "#FFFFFF")
        .collect();
    assert!(fills.len() >= 3, "{fills:?}");
}

#[test]
fn a_live_run_warns_when_its_transport_distorts_calls_by_more_than_one_percent() {
    let mut r = common::one_strategy();
    let transport = |distortion| sim::report::Transport {
        samples: 100,
        p50_ms: 1.5,
        p99_ms: 3.0,
        time_scale: 20.0,
        distortion,
    };
    r.runs[0].summary.transport = Some(transport(0.005));
    assert!(
        reports::markdown::transport_warnings(&r).is_empty(),
        "0.5% is within bounds"
    );
    assert!(reports::markdown::render(&r).contains("the transport added 1.5 ms per call"));
    r.runs[0].summary.transport = Some(transport(0.018));
    let warnings = reports::markdown::transport_warnings(&r);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("1.8%") && warnings[0].contains("lower --time-scale"),
        "{warnings:?}"
    );
}
