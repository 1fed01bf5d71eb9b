//! How a run is reported: a table for people, one JSON line for scripts
//! (and, with `--out`, appended to a file that `scripts/plot.py` reads).

use std::io::Write;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// A histogram of microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  p999 {:.2}  max {:.2} ms  (n={})",
            self.p50, self.p90, self.p99, self.p999, self.max, self.count
        )
    }
}

/// Prints the table and the JSON line; appends the JSON to `out`.
pub fn emit<T: Serialize>(
    scenario: &str,
    partial: bool,
    rows: &[(&str, String)],
    json: &T,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let title = if partial {
        format!("{scenario} (PARTIAL: stopped early)")
    } else {
        scenario.to_owned()
    };
    println!("\n{title}");
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("  {k:<w$}  {v}");
    }
    let mut value = serde_json::to_value(json)?;
    if let Some(o) = value.as_object_mut() {
        o.insert("scenario".into(), scenario.into());
        o.insert("partial".into(), partial.into());
    }
    let line = serde_json::to_string(&value)?;
    println!("{line}");
    if let Some(path) = out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}
