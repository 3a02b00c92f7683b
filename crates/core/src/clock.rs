//! Wall-clock time and run ids (the engine and the simulator use tokio's clock instead, which
//! tests pause).

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `run-20261127T035012Z-3f9a`: sortable by time, unique enough with the random suffix.
pub fn new_run_id() -> String {
    let now = unix_now();
    let suffix: u16 = rand::random();
    format!("run-{}-{suffix:04x}", compact_utc(now))
}

/// Unix seconds as `YYYYMMDDTHHMMSSZ` (civil-from-days, proleptic Gregorian).
pub fn compact_utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}
