//! Kubernetes' `duration.HumanDuration`, which ignite's `ps` uses for the
//! CREATED column (`5s ago`) and the STATUS column (`Up 2m30s`).

/// Renders an elapsed time of `seconds` the way
/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration` does.
pub fn human(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn matches_kubernetes_human_duration() {
        assert_eq!(human(-5), "<invalid>");
        assert_eq!(human(-1), "0s");
        assert_eq!(human(0), "0s");
        assert_eq!(human(119), "119s");
        assert_eq!(human(150), "2m30s");
        assert_eq!(human(180), "3m");
        assert_eq!(human(15 * 60), "15m");
        assert_eq!(human(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(human(10 * 3600), "10h");
        assert_eq!(human(3 * 86_400 + 4 * 3600), "3d4h");
        assert_eq!(human(20 * 86_400), "20d");
        assert_eq!(human(3 * 365 * 86_400 + 10 * 86_400), "3y10d");
        // ps-table.txt golden: a VM created in 2000, listed in 2021.
        assert_eq!(human(21 * 365 * 86_400 + 100 * 86_400), "21y");
    }
}
