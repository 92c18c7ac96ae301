//! `human_duration`: upstream's `duration.HumanDuration`, the short, lossy
//! rendering used for every AGE-like cell ("45s", "3m20s", "5h3m", "3d5h", "2y30d").

use jiff::SignedDuration;

/// Renders `d` as upstream's `duration.HumanDuration` does.
///
/// Up to two seconds of negative skew counts as "now" ("0s"); anything more
/// negative is `<invalid>`. Precision drops as the duration grows.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
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
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        return if dy == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{dy}d")
        };
    }
    format!("{years}y")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(secs: i64, expect: &str) {
        assert_eq!(
            human_duration(SignedDuration::from_secs(secs)),
            expect,
            "{secs}s"
        );
    }

    #[test]
    fn upstream_table() {
        let m = 60;
        let h = 60 * m;
        let d = 24 * h;
        let y = 365 * d;
        for (secs, expect) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (2 * m, "2m"),
            (3 * m + 20, "3m20s"),
            (9 * m + 59, "9m59s"),
            (10 * m + 30, "10m"),
            (75 * m, "75m"),
            (179 * m, "179m"),
            (3 * h, "3h"),
            (5 * h + 3 * m, "5h3m"),
            (8 * h, "8h"),
            (30 * h, "30h"),
            (47 * h + 59 * m, "47h"),
            (2 * d, "2d"),
            (3 * d + 5 * h, "3d5h"),
            (7 * d + 23 * h, "7d23h"),
            (8 * d, "8d"),
            (40 * d, "40d"),
            (729 * d, "729d"),
            (2 * y, "2y"),
            (2 * y + 30 * d, "2y30d"),
            (8 * y, "8y"),
            (10 * y + 100 * d, "10y"),
        ] {
            check(secs, expect);
        }
    }
}
