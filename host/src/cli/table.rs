//! Sessions as an aligned table for people: one row per session, the last
//! heartbeat as an age ("12s ago").

use serde::Deserialize;

/// A session as the API shows it, read back by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRow {
    /// The user.
    pub user_id: String,
    /// `active`, `starting`, `stopping` or `none`.
    pub status: String,
    /// The VM's id.
    #[serde(default)]
    pub vm_id: Option<String>,
    /// The public URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The last heartbeat, in milliseconds since the epoch.
    #[serde(default)]
    pub last_heartbeat: Option<u64>,
}

/// The column titles, in order.
const HEADERS: [&str; 5] = ["USER", "STATUS", "URL", "LAST HEARTBEAT", "VM"];

/// What an absent value shows as.
const NONE: &str = "-";

/// `rows` as a table with a header line, columns aligned with two spaces
/// between them, ages counted back from `now_ms`.
pub fn render(rows: &[SessionRow], now_ms: u64) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            [
                row.user_id.clone(),
                row.status.clone(),
                row.url.clone().unwrap_or_else(|| NONE.into()),
                row.last_heartbeat
                    .map_or_else(|| NONE.into(), |at| age(now_ms, at)),
                row.vm_id.clone().unwrap_or_else(|| NONE.into()),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|title| title.chars().count());
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADERS.map(str::to_string);
    for line in std::iter::once(&header).chain(&cells) {
        let mut text = String::new();
        for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// How long ago `at_ms` was at `now_ms`, in the largest whole unit: `12s
/// ago`, `5m ago`, `3h ago`, `2d ago`; `just now` for a time not yet past
/// (a host clock ahead of this one).
pub fn age(now_ms: u64, at_ms: u64) -> String {
    let Some(elapsed) = now_ms.checked_sub(at_ms).map(|ms| ms / 1000) else {
        return "just now".into();
    };
    match elapsed {
        0..60 => format!("{elapsed}s ago"),
        60..3600 => format!("{}m ago", elapsed / 60),
        3600..86400 => format!("{}h ago", elapsed / 3600),
        _ => format!("{}d ago", elapsed / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, status: &str, url: Option<&str>, heartbeat: Option<u64>) -> SessionRow {
        SessionRow {
            user_id: user.into(),
            status: status.into(),
            vm_id: url.map(|_| format!("vessel-{user}")),
            url: url.map(Into::into),
            last_heartbeat: heartbeat,
        }
    }

    #[test]
    fn columns_line_up_under_their_titles() {
        let now = 1_000_000_000;
        let rows = [
            row(
                "alice",
                "active",
                Some("http://alice.dev"),
                Some(now - 12_000),
            ),
            row("bob-the-builder", "starting", None, Some(now - 300_000)),
        ];
        let expected = "\
USER             STATUS    URL               LAST HEARTBEAT  VM
alice            active    http://alice.dev  12s ago         vessel-alice
bob-the-builder  starting  -                 5m ago          -
";
        assert_eq!(render(&rows, now), expected);
    }

    #[test]
    fn an_empty_listing_is_the_header_alone() {
        assert_eq!(render(&[], 0), "USER  STATUS  URL  LAST HEARTBEAT  VM\n");
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let now = 10 * 86_400_000;
        assert_eq!(age(now, now), "0s ago");
        assert_eq!(age(now, now - 59_999), "59s ago");
        assert_eq!(age(now, now - 60_000), "1m ago");
        assert_eq!(age(now, now - 7_200_000), "2h ago");
        assert_eq!(age(now, now - 3 * 86_400_000), "3d ago");
        assert_eq!(age(now, now + 5_000), "just now");
    }
}
