//! The shared quota under faults, small and asserted (`bench --scenario faults` runs the same
//! scenarios at 500 accounts and prints them): all runs together, no request finds 15
//! operations outstanding, none starts an operation in an account with one running, no sliding
//! second holds more than 20 requests, no slot is lost for good, nothing is reported done that
//! is not, and each fault does what it is meant to (see `sso_fanout_bench::faults`).

use sso_fanout_bench::faults::{scenario, Fault, FaultReport};
use sso_fanout_core::model::{AssignmentKey, PrincipalType};
use sso_fanout_core::ports::AssignmentOps;
use sso_fanout_sim::{SimCloud, SimConfig};

async fn report(fault: Fault, accounts: usize, seed: u64) -> FaultReport {
    scenario(fault, accounts, seed).await.expect("the scenario runs")
}

/// The six invariants, over every request the simulated instance received.
fn assert_kept(r: &FaultReport) {
    let c = &r.counters;
    assert_eq!(c.outstanding_violations, 0, "{:?}: an operation found 15 outstanding: {c:?}", r.fault);
    assert_eq!(c.conflict_violations, 0, "{:?}: an operation started beside a running one: {c:?}", r.fault);
    assert_eq!(c.window_violations, 0, "{:?}: a sliding second held more than 20 requests: {c:?}", r.fault);
    assert!(c.max_in_window <= 20, "{c:?}");
    assert_eq!(r.lost_slots, 0, "{:?}: slots lost for good", r.fault);
    assert_eq!(r.false_successes, 0, "{:?}", r.fault);
    for s in &r.summaries {
        assert_eq!(s.counts.failed, 0, "{:?}: {:?}", r.fault, s.failures);
    }
}

fn succeeded(r: &FaultReport, run: usize) -> usize {
    r.summaries[run].counts.succeeded
}

#[tokio::test(start_paused = true)]
async fn a_run_that_ends_with_operations_in_flight_leaves_them_their_slots_and_accounts() {
    let r = report(Fault::InFlightAtEnd, 60, 21).await;
    assert!(r.summaries[0].counts.timed_out >= 10, "{:?}", r.summaries[0].counts);
    assert!(r.fact("in_flight_when_b_started") > 0);
    assert_eq!(succeeded(&r, 1), 60, "{:?}", r.summaries[1].counts);
    assert_kept(&r);
}

#[tokio::test(start_paused = true)]
async fn a_killed_run_holding_every_slot_blocks_only_what_it_still_runs() {
    let r = report(Fault::Killed, 90, 22).await;
    assert!(r.fact("in_flight_when_killed") > 5, "{:?}", r.facts);
    assert_eq!(succeeded(&r, 0), 90, "{:?}", r.summaries[0].counts);
    assert_kept(&r);
}

#[tokio::test(start_paused = true)]
async fn a_process_killed_between_aws_accepting_a_create_and_recording_it_never_has_it_sent_again_while_it_runs() {
    let r = report(Fault::KilledAfterAccept, 40, 23).await;
    assert_eq!(r.fact("accepted_then_killed"), 1);
    assert_eq!(r.summaries[0].counts.succeeded + r.summaries[0].counts.skipped, 40, "{:?}", r.summaries[0].counts);
    assert_kept(&r);
}

#[tokio::test(start_paused = true)]
async fn a_create_whose_answer_is_lost_is_found_at_aws_not_sent_again() {
    let r = report(Fault::LostCreateAnswers, 80, 24).await;
    assert!(r.fact("answers_lost") >= 10, "{:?}", r.facts);
    assert_eq!(r.fact("sent_again"), 0, "{:?}", r.facts);
    assert_eq!(succeeded(&r, 0), 80);
    assert_kept(&r);
}

#[tokio::test(start_paused = true)]
async fn clocks_200_ms_off_either_way_keep_every_second_within_the_limit() {
    let r = report(Fault::SkewedClocks, 150, 25).await;
    for run in 0..3 {
        assert_eq!(succeeded(&r, run), 150, "{:?}", r.summaries[run].counts);
    }
    assert_kept(&r);
}

#[tokio::test(start_paused = true)]
async fn a_clock_an_hour_ahead_stalls_nobody_and_its_slots_come_back_when_it_dies() {
    let r = report(Fault::ClockFarAhead, 60, 27).await;
    assert_eq!(succeeded(&r, 0), 60);
    // 60 accounts at ~3 s each on 15 slots is ~15 s; the dead holder's heartbeat and checks on top.
    assert!(r.fact("normal_run_s") < 90, "{:?}", r.facts);
    assert_kept(&r);
}

#[tokio::test(start_paused = true)]
async fn a_holder_whose_heartbeat_fails_longer_than_its_ttl_pauses_while_others_take_over_safely() {
    let r = report(Fault::HeartbeatOutage, 120, 28).await;
    assert_eq!(succeeded(&r, 1), 120, "{:?}", r.summaries[1].counts);
    assert_eq!(r.fact("started_while_cut_off"), 0, "the cut-off holder started operations: {:?}", r.facts);
    assert_eq!(succeeded(&r, 0), 120, "and finished once it got through again: {:?}", r.summaries[0].counts);
    assert_kept(&r);
}

#[tokio::test(start_paused = true)]
async fn twin_workers_of_one_batch_never_share_a_slot() {
    let r = report(Fault::Twins, 80, 29).await;
    assert_eq!(r.fact("twin_results"), 160, "both twins reported every account");
    assert!(r.fact("twin_succeeded") >= 80, "{:?}", r.facts);
    assert_eq!(r.summaries[0].counts.succeeded, 80, "{:?}", r.summaries[0].counts);
    assert_kept(&r);
}

#[tokio::test(start_paused = true)]
async fn ledger_answers_lost_after_being_applied_lose_no_slot() {
    let r = report(Fault::LostLedgerAnswers, 120, 30).await;
    assert_eq!(succeeded(&r, 0), 120, "{:?}", r.summaries[0].failures);
    assert_kept(&r);
}

#[tokio::test(start_paused = true)]
async fn a_ledger_outage_never_multiplies_the_rate() {
    let r = report(Fault::LedgerOutage, 200, 31).await;
    for s in &r.summaries {
        assert_eq!(s.counts.succeeded, 200, "an outage delays a run, it does not end it: {:?}", s.counts);
    }
    assert_kept(&r);
}

/// The control: the simulator does count an operation started beside a running one (what the
/// tests above assert it never sees).
#[tokio::test(start_paused = true)]
async fn the_simulator_counts_an_operation_started_beside_a_running_one() {
    let sim = SimCloud::new(SimConfig::clean(5, 32));
    let key = |ps: &str| AssignmentKey {
        account_id: sim.org().accounts.iter().find(|a| a.id.as_str() != sso_fanout_sim::org::MANAGEMENT_ACCOUNT_ID).unwrap().id.clone(),
        permission_set_arn: sim.resolve_permission_set_quiet(ps).unwrap(),
        principal_type: PrincipalType::Group,
        principal_id: sim.principals()[0].id.clone(),
    };
    sim.create_assignment(&key("AdministratorAccess")).await.unwrap();
    assert!(sim.create_assignment(&key("ReadOnlyAccess")).await.is_err());
    assert_eq!(sim.counters().conflict_violations, 1);
}
