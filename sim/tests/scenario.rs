//! Scenario files: strict parsing whose errors name the key and the line, and never half-load.

use sim::Scenario;

const GOOD: &str = r#"name = "ok"
seed = 9

[workload]
files = 10
users = 3
chunks_per_file = { dist = "uniform", min = 2, max = 5 }
prompt_tokens = { dist = "normal", mean = 1000, stddev = 100 }
completion_tokens = { dist = "fixed", value = 100 }
max_tokens = 200
arrival = { kind = "poisson", per_minute = 20 }

[provider]
tpm = 100000
rpm = 300

[[timeline]]
at = "1m"
set = { max-parallelism = 8 }

[[timeline]]
at = "30s"
outage = { for = "10s" }
"#;

fn err(text: &str) -> String {
    match Scenario::parse(text, "bad.toml") {
        Ok(_) => panic!("should be rejected:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Replaces the first occurrence of `from` in the good scenario.
fn with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "test bug: {from} not in GOOD");
    GOOD.replacen(from, to, 1)
}

#[test]
fn a_good_scenario_loads_with_its_timeline_in_time_order() {
    let s = Scenario::parse(GOOD, "good.toml").expect("valid");
    assert_eq!((s.name.as_str(), s.seed, s.workload.files), ("ok", 9, 10));
    let at: Vec<u64> = s.events().iter().map(|e| e.at.0.as_secs()).collect();
    assert_eq!(at, [30, 60]);
    let p = s.provider_config();
    assert_eq!(
        p.schedule.outages.len(),
        1,
        "the outage reaches the provider's schedule"
    );
    assert_eq!(p.schedule.outages[0].status, 503, "503 is the default outage status");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = err(&with("rpm = 300", "rpm = 300\nburst = 5"));
    assert!(
        e.contains("bad.toml") && e.contains("line 16") && e.contains("burst"),
        "{e}"
    );
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let e = err(&with("files = 10", "files = \"ten\""));
    assert!(e.contains("line 5") && e.contains("files"), "{e}");
}

#[test]
fn impossible_values_are_named_with_their_line() {
    // (replacement, line, words the message must contain)
    let cases = [
        (("tpm = 100000", "tpm = -5"), "line 14", "tpm = -5"),
        (("tpm = 100000", "tpm = 0"), "line 14", "nonzero"),
        (
            ("min = 2, max = 5", "min = 9, max = 5"),
            "line 7",
            "must not be greater than `max`",
        ),
        (("stddev = 100", "stddev = -1"), "line 8", "stddev"),
        (
            ("per_minute = 20", "per_minute = 0"),
            "line 11",
            "lies in [0.001, 1000000]",
        ),
        (("at = \"1m\"", "at = \"soon\""), "line 18", "not a duration"),
        (("max-parallelism = 8", "max-parallelism = 0"), "line 19", "nonzero"),
        (
            (
                "outage = { for = \"10s\" }",
                "outage = { for = \"10s\" }\nset = { target-tpm = 5 }",
            ),
            "at \"30s\"",
            "exactly one action",
        ),
    ];
    for ((from, to), line, words) in cases {
        let e = err(&with(from, to));
        assert!(e.contains(line) && e.contains(words), "{to}: {e}");
    }
}

#[test]
fn an_outage_status_must_be_a_server_error_or_429() {
    // An "outage" answering 200 or 404 is no outage: the client would take it as an answer or as
    // its own mistake.
    for bad in [200, 404] {
        let e = err(&with(
            "outage = { for = \"10s\" }",
            &format!("outage = {{ for = \"10s\", status = {bad} }}"),
        ));
        assert!(e.contains(&format!("outage status {bad} must be a 5xx or 429")), "{e}");
    }
    for good in [429, 502] {
        let text = with(
            "outage = { for = \"10s\" }",
            &format!("outage = {{ for = \"10s\", status = {good} }}"),
        );
        Scenario::parse(&text, "ok.toml").expect("a 5xx or 429 outage is fine");
    }
}

#[test]
fn network_delays_outside_their_range_are_rejected() {
    for bad in ["jitter_ms = -1", "base_ms = 1e9", "jitter_ms = nan"] {
        let e = err(&with(
            "rpm = 300",
            &format!("rpm = 300\n[client]\nnetwork = {{ {bad} }}"),
        ));
        assert!(e.contains("must lie in [0, 60000]") || e.contains("nan"), "{bad}: {e}");
    }
}

#[test]
fn probabilities_outside_zero_one_are_rejected() {
    let e = err(&with("rpm = 300", "rpm = 300\nerror_rate = 1.5"));
    assert!(e.contains("line 16") && e.contains("between 0 and 1"), "{e}");
}

#[test]
fn a_timeline_entry_naming_a_missing_user_is_rejected_with_its_line() {
    let text = format!("{GOOD}\n[[timeline]]\nat = \"2m\"\ncancel = {{ user = \"user-4\" }}\n");
    let e = err(&text);
    assert!(
        e.contains("line 25") && e.contains("user-4") && e.contains("only 3 users"),
        "{e}"
    );
    let text = format!("{GOOD}\n[[timeline]]\nat = \"2m\"\ncancel = {{ user = \"bob\" }}\n");
    assert!(err(&text).contains("not a user name"));
}

#[test]
fn missing_required_sections_are_named() {
    let e = err("name = \"x\"\n");
    assert!(e.contains("workload"), "{e}");
}

#[test]
fn a_rejected_scenario_leaves_nothing_half_loaded() {
    // Parsing is a pure function from text to a whole scenario or an error: a failed parse
    // returns no value at all, and parsing the good text afterwards is unaffected.
    assert!(Scenario::parse(&with("files = 10", "files = -1"), "bad").is_err());
    let s = Scenario::parse(GOOD, "good").expect("valid");
    assert_eq!(s.workload.files, 10);
}

#[test]
fn every_shipped_scenario_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios/ exists") {
        let path = entry.expect("readable").path();
        if path.extension().is_some_and(|e| e == "toml") {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 7, "found {n} scenarios");
}

#[test]
fn a_slowdown_reaches_the_provider_schedule_and_a_bad_factor_is_named() {
    let text = format!("{GOOD}\n[[timeline]]\nat = \"2m\"\nslowdown = {{ for = \"30s\", factor = 5 }}\n");
    let s = Scenario::parse(&text, "spike.toml").expect("valid");
    let spikes = s.provider_config().schedule.slowdowns;
    assert_eq!(spikes.len(), 1);
    assert_eq!(
        (spikes[0].start.as_secs(), spikes[0].end.as_secs(), spikes[0].factor),
        (120, 150, 5.0)
    );
    let e = err(&text.replace("factor = 5", "factor = 0"));
    assert!(e.contains("a slowdown's `factor` lies in (0, 1000]"), "{e}");
}

#[test]
fn user_weights_share_the_files_in_proportion() {
    // users = 3 with weights 6:1:1: user-1 gets about three files in four.
    let text = with("users = 3", "users = 3\nuser_weights = [6, 1, 1]").replace("files = 10", "files = 8000");
    let s = Scenario::parse(&text, "weights.toml").expect("valid");
    let w = sim::workload::Workload::generate(&s.workload, s.seed);
    let mut per_user = [0u32; 3];
    for f in w.files() {
        per_user[f.user.0 as usize] += 1;
    }
    // 6/8 = 0.75 of 8,000 files; the binomial's standard deviation is under 40 files, so 0.72 to
    // 0.78 is more than seven of them either side.
    let heavy = f64::from(per_user[0]) / 8000.0;
    assert!((0.72..=0.78).contains(&heavy), "{per_user:?}");
    assert!(per_user[1] > 700 && per_user[2] > 700, "{per_user:?}");
}

#[test]
fn user_weights_must_give_one_weight_per_user_each_at_least_one() {
    let e = err(&with("users = 3", "users = 3\nuser_weights = [6, 1]"));
    assert!(e.contains("`user_weights` has 2 weights, but `users` is 3"), "{e}");
    let e = err(&with("users = 3", "users = 3\nuser_weights = [6, 0, 1]"));
    assert!(
        e.contains("line 7") && e.contains("each of `user_weights` lies in [1, 1000000]"),
        "{e}"
    );
}
