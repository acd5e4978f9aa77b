//! What the `/metrics` pages of a node and the proxy are made with: a prometheus-client
//! registry holding one collector that reads counters at scrape time ([`Exporter`]), helpers
//! for the families such a collector encodes, and the latency histogram's buckets.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of what [`Exporter::render`] produces (OpenMetrics text, as
/// prometheus-client encodes it; Prometheus asks for it first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency histogram buckets, in microseconds (powers of two up to ~1 s).
/// Histograms count in `LATENCY_BUCKETS_US.len() + 1` slots, the last one for slower events.
pub const LATENCY_BUCKETS_US: [u64; 21] = [
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072,
    262144, 524288, 1048576,
];

/// The slot of [`LATENCY_BUCKETS_US`] (or the overflow slot after them) `usec` counts in.
pub fn latency_slot(usec: u64) -> usize {
    LATENCY_BUCKETS_US.partition_point(|&b| b < usec)
}

/// Turns per-bucket counts (one slot per [`LATENCY_BUCKETS_US`] bound, then the overflow slot)
/// into (upper bound in seconds, count) pairs ending with `+Inf`.
pub fn histogram_buckets(slots: &[u64]) -> Vec<(f64, u64)> {
    LATENCY_BUCKETS_US
        .iter()
        .map(|&us| us as f64 / 1e6)
        .chain(std::iter::once(f64::INFINITY))
        .zip(slots.iter().copied())
        .collect()
}

/// Encodes a one-series family with no labels.
pub fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let family = encoder.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(family)
}

/// Encodes one labelled counter series of `family`.
pub fn counter(
    family: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(family.encode_family(labels)?)
}

/// A gauge of an unsigned count (`i64::MAX` if it does not fit).
pub fn gauge(value: impl TryInto<i64>) -> ConstGauge<i64> {
    ConstGauge::new(value.try_into().unwrap_or(i64::MAX))
}

/// Renders a registry holding only one collector, which reads everything at scrape time.
pub struct Exporter {
    registry: Registry,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter of what `collector` encodes.
    pub fn new(collector: impl Collector) -> Exporter {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        Exporter { registry }
    }

    /// The metrics in the OpenMetrics text format (see [`CONTENT_TYPE`]), ending in `# EOF`.
    ///
    /// Writing to a `String` cannot fail, so an error can only come from a collector bug: the
    /// page is then empty (just `# EOF`) rather than truncated.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::MetricType;

    use super::*;

    #[test]
    fn histogram_buckets_end_with_infinity() {
        let slots = vec![1; LATENCY_BUCKETS_US.len() + 1];
        let buckets = histogram_buckets(&slots);
        assert_eq!(buckets.len(), LATENCY_BUCKETS_US.len() + 1);
        assert_eq!(buckets[0], (1e-6, 1));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(latency_slot(0), 0);
        assert_eq!(latency_slot(1), 0);
        assert_eq!(latency_slot(3), 2);
        assert_eq!(latency_slot(u64::MAX), LATENCY_BUCKETS_US.len());
    }

    #[derive(Debug)]
    struct Sample;

    impl Collector for Sample {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            single(&mut encoder, "up", "Whether it runs.", None, gauge(1u64))?;
            let mut family =
                encoder.encode_descriptor("hits", "Hits.", None, MetricType::Counter)?;
            counter(&mut family, &[("kind", "a")], 3)?;
            single(&mut encoder, "big", "Too big.", None, gauge(u64::MAX))
        }
    }

    #[test]
    fn exporters_render_openmetrics_text() {
        let text = Exporter::new(Sample).render();
        for line in [
            "# TYPE up gauge",
            "up 1",
            "hits_total{kind=\"a\"} 3",
            &format!("big {}", i64::MAX),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
