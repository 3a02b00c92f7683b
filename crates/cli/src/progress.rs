//! Live progress of a run: a bar with counts by outcome and operations in flight (stderr; hidden
//! when stderr is not a terminal or the output is JSON).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sso_fanout_core::engine::EngineEvent;
use sso_fanout_core::model::Outcome;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub fn spawn(total: u64, estimate_s: f64, visible: bool) -> (mpsc::UnboundedSender<EngineEvent>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bar = ProgressBar::with_draw_target(Some(total), if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg} {elapsed} (estimate {prefix})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(crate::output::secs(estimate_s));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let handle = tokio::spawn(async move {
        let (mut ok, mut failed, mut in_flight) = (0u64, 0u64, 0i64);
        while let Some(event) = rx.recv().await {
            match event {
                EngineEvent::Started { .. } => in_flight += 1,
                EngineEvent::Finished(r) => {
                    in_flight = (in_flight - 1).max(0);
                    match r.outcome {
                        Outcome::Succeeded | Outcome::Skipped => ok += 1,
                        _ => {
                            failed += 1;
                            bar.println(format!(
                                "  {} {} ({}): {}",
                                r.outcome.as_str(),
                                r.account_id,
                                r.account_name,
                                r.reason.as_deref().unwrap_or("")
                            ));
                        }
                    }
                    bar.inc(1);
                }
            }
            bar.set_message(format!("ok {ok}  failed {failed}  in flight {in_flight}"));
        }
        bar.finish_and_clear();
    });
    (tx, handle)
}
