//! Percentiles, unit formatting and the raw-disk reference figure.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The `p`-th quantile (0.0–1.0) of `samples`, nearest rank; zero when there are none.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `d` in milliseconds, two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `count` events over `elapsed`, per second, rounded.
pub fn rate(count: usize, elapsed: Duration) -> String {
    format!("{:.0}/s", count as f64 / elapsed.as_secs_f64())
}

/// A size in KiB as MiB, one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Median latency of `n` appends of 4 KiB each followed by `fdatasync`, in a scratch file
/// in `dir`: what one durable write costs on that disk.
pub fn fdatasync_p50(dir: &Path, n: usize) -> std::io::Result<Duration> {
    let path = dir.join("fdatasync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(t.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(percentile(&samples, 0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_picks_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&s, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn formats_units() {
        assert_eq!(ms(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(rate(10, Duration::from_secs(2)), "5/s");
        assert_eq!(mib(2048), "2.0 MiB");
    }
}
