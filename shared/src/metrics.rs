//! A small Prometheus registry: counters, gauges and histograms, each a
//! family of series with fixed labels, rendered in the text exposition
//! format. Hot paths keep a handle (an `Arc` of atomics) and never lock;
//! only creating a series and rendering take the registry's lock.
//!
//! Hand-rolled because what Herald needs is this small, and the usual
//! crates bring an HTTP stack or a global registry with them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Buckets (seconds) for latencies from a millisecond to a minute.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A monotonically increasing count.
#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Default, Debug)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds `d` (may be negative).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct HistogramInner {
    bounds: Vec<f64>,
    /// Per bucket (not cumulative); the last one is +Inf.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

/// A distribution of observations (seconds), in fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram(Arc::new(HistogramInner {
            bounds: bounds.to_vec(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    /// Records one observation, in seconds.
    pub fn observe(&self, secs: f64) {
        let secs = secs.max(0.0);
        let i = self
            .0
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.0.bounds.len());
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_nanos
            .fetch_add((secs * 1e9) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

#[derive(Debug, Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: &'static str,
    /// Rendered label set (`{a="b"}` or "") → series.
    series: BTreeMap<String, Series>,
}

/// The metrics of one process. Cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
}

fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn get_or_create(
        &self,
        name: &str,
        help: &str,
        kind: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Series,
    ) -> Series {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            kind,
            series: BTreeMap::new(),
        });
        family
            .series
            .entry(label_set(labels))
            .or_insert_with(make)
            .clone()
    }

    /// The counter `name` with `labels`, created at zero if new.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.get_or_create(name, help, "counter", labels, || {
            Series::Counter(Counter::default())
        }) {
            Series::Counter(c) => c,
            _ => Counter::default(), // a name reused with another type: a bug; stay harmless
        }
    }

    /// The gauge `name` with `labels`, created at zero if new.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.get_or_create(name, help, "gauge", labels, || {
            Series::Gauge(Gauge::default())
        }) {
            Series::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    /// The histogram `name` with `labels` and bucket bounds (seconds).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
    ) -> Histogram {
        match self.get_or_create(name, help, "histogram", labels, || {
            Series::Histogram(Histogram::new(bounds))
        }) {
            Series::Histogram(h) => h,
            _ => Histogram::new(bounds),
        }
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, f) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for (labels, s) in &f.series {
                match s {
                    Series::Counter(c) => {
                        let _ = writeln!(out, "{name}{labels} {}", c.get());
                    }
                    Series::Gauge(g) => {
                        let _ = writeln!(out, "{name}{labels} {}", g.get());
                    }
                    Series::Histogram(h) => render_histogram(&mut out, name, labels, h),
                }
            }
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    // `le` joins the series' own labels.
    let with_le = |le: &str| {
        if labels.is_empty() {
            format!("{{le=\"{le}\"}}")
        } else {
            format!("{},le=\"{le}\"}}", &labels[..labels.len() - 1])
        }
    };
    let mut cumulative = 0;
    for (i, bound) in h.0.bounds.iter().enumerate() {
        cumulative += h.0.counts[i].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{} {cumulative}",
            with_le(&bound.to_string())
        );
    }
    cumulative += h.0.counts[h.0.bounds.len()].load(Ordering::Relaxed);
    let _ = writeln!(out, "{name}_bucket{} {cumulative}", with_le("+Inf"));
    let sum = h.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    let _ = writeln!(out, "{name}_sum{labels} {sum}");
    let _ = writeln!(out, "{name}_count{labels} {cumulative}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let r = Registry::new();
        r.counter("herald_x_total", "Xs.", &[("code", "OK")]).add(3);
        r.counter("herald_x_total", "Xs.", &[("code", "OK")]).inc();
        r.counter("herald_x_total", "Xs.", &[("code", "NOT_FOUND")])
            .inc();
        r.gauge("herald_depth", "Depth.", &[]).set(-2);
        let h = r.histogram("herald_lat_seconds", "Lat.", &[("k", "a\"b")], &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        let text = r.render();
        let want = [
            "# TYPE herald_x_total counter",
            "herald_x_total{code=\"OK\"} 4",
            "herald_x_total{code=\"NOT_FOUND\"} 1",
            "# TYPE herald_depth gauge",
            "herald_depth -2",
            "herald_lat_seconds_bucket{k=\"a\\\"b\",le=\"0.1\"} 1",
            "herald_lat_seconds_bucket{k=\"a\\\"b\",le=\"1\"} 2",
            "herald_lat_seconds_bucket{k=\"a\\\"b\",le=\"+Inf\"} 3",
            "herald_lat_seconds_count{k=\"a\\\"b\"} 3",
        ];
        for line in want {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(h.count(), 3);
    }
}
