//! The README's custom strategy (`examples/custom_strategy.rs`) through the testing kit: it keeps
//! every promise as written, and the kit catches its resume logic broken on purpose.

#[path = "../examples/custom_strategy.rs"]
#[allow(dead_code)] // the example's `main` is not run here
mod custom;

use strategies::kit::{Expect, Invariant, check_strategy};

#[test]
fn the_example_strategy_keeps_every_promise_of_the_kit() {
    let made =
        |_: &sim::Scenario| Box::new(custom::Semaphore { forget_stored: false }) as Box<dyn strategies::Strategy>;
    if let Err(f) = check_strategy(made, &Expect::default(), 48) {
        panic!("the example broke a promise:\n{f}");
    }
}

#[test]
fn the_kit_catches_a_resume_that_validates_stored_chunks_again() {
    // With `forget_stored`, a file resumed after a crash is validated whole again: the kit must
    // find a case (a crash after some results were stored) and name the invariant, with a
    // scenario to replay it.
    let made = |_: &sim::Scenario| Box::new(custom::Semaphore { forget_stored: true }) as Box<dyn strategies::Strategy>;
    let failure = check_strategy(made, &Expect::default(), 200).expect_err("the kit finds the broken resume");
    assert!(
        failure.why.contains(&Invariant::NoRedoAfterCrash.to_string()),
        "the failure names the invariant: {failure}"
    );
    // The shrunk case still has the crash that shows the bug, and its scenario replays it.
    let case = failure.case.as_ref().expect("a failing case");
    assert!(
        case.faults
            .iter()
            .any(|f| matches!(f, strategies::kit::Fault::Crash { .. })),
        "{case:?}"
    );
    let scenario = sim::Scenario::parse(&failure.scenario, "replay").expect("the scenario it gives is valid");
    let again = strategies::kit::check_case(
        &custom::Semaphore { forget_stored: true },
        &scenario,
        &Expect::default(),
    );
    assert!(again.is_err(), "the replayed scenario fails again");
}
