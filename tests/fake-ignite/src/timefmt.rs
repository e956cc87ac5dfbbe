//! Time helpers: the current Unix time and Go's `time.RFC3339` rendering
//! (`2006-01-02T15:04:05Z07:00`), in UTC or in the local timezone.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::sys;

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// `secs` as RFC 3339 in UTC, e.g. `2021-07-19T10:00:00Z` (how ignite's JSON
/// stores `metadata.created` and `status.startTime`).
pub fn rfc3339_utc(secs: i64) -> String {
    rfc3339_with_offset(secs, 0)
}

/// `secs` as RFC 3339 in the local timezone, e.g. `2021-08-02T17:10:14+02:00`
/// (how logrus stamps log lines).
pub fn rfc3339_local(secs: i64) -> String {
    rfc3339_with_offset(secs, sys::local_utc_offset(secs))
}

/// `secs` shifted by `offset` seconds, rendered with that offset (`Z` for 0).
pub fn rfc3339_with_offset(secs: i64, offset: i64) -> String {
    let local = secs + offset;
    let days = local.div_euclid(86_400);
    let of_day = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let zone = if offset == 0 {
        "Z".to_string()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.abs() / 60;
        format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{zone}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Converts days since 1970-01-01 to a (year, month, day) civil date
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_and_offsets_like_go() {
        // 2000-01-01T01:00:00Z, the time of ignite's golden files.
        assert_eq!(rfc3339_utc(946_688_400), "2000-01-01T01:00:00Z");
        assert_eq!(
            rfc3339_with_offset(1_627_917_014, 7200),
            "2021-08-02T17:10:14+02:00"
        );
        assert_eq!(
            rfc3339_with_offset(0, -5 * 3600 - 1800),
            "1969-12-31T18:30:00-05:30"
        );
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
