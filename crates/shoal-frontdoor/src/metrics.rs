//! What the `/metrics` pages of a node and the proxy are made with: a prometheus-client
//! registry holding one collector that reads counters at scrape time ([`Exporter`]), helpers
//! for the families such a collector encodes, the latency histogram's buckets, and the front
//! door's own families ([`encode_door`]), which a node and the proxy both export.
//!
//! The front door's families, named `<prefix>_...` (`shoal` on a node, `shoal_proxy` on the
//! proxy):
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `<prefix>_commands_total` | counter | `command`, `result` = `ok` / `error` / `rejected` |
//! | `<prefix>_command_duration_seconds` | histogram | `command` |
//! | `<prefix>_errors_total` | counter | `code` (first word of the error reply: `ERR`, `OOM`, ...) |
//! | `<prefix>_connected_clients` | gauge | |
//! | `<prefix>_connections_received_total`, `<prefix>_connections_rejected_total` | counter | |
//! | `<prefix>_query_buffer_disconnections_total`, `<prefix>_output_buffer_disconnections_total`, `<prefix>_protocol_errors_total`, `<prefix>_cross_protocol_attempts_total` | counter | |
//! | `<prefix>_command_panics_total` | counter | |
//! | `<prefix>_net_input_bytes_total`, `<prefix>_net_output_bytes_total` | counter | |
//!
//! A command appears once it has been called, refused or failed at least once; its three
//! `result` series add up to every attempt (`ok` = calls that ran and succeeded, `error` =
//! calls that ran and answered an error, `rejected` = calls refused before running). The
//! duration histogram counts the calls that ran, with the buckets of [`LATENCY_BUCKETS_US`] in
//! seconds.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::commands::table;
use crate::door::Door;
pub use crate::exposition::{Format, TEXT_CONTENT_TYPE};
use crate::stats::CommandTotals;
pub use crate::stats::{LATENCY_BUCKETS_US, histogram_buckets, latency_slot};

/// The `Content-Type` of what [`Exporter::render`] produces (OpenMetrics text, as
/// prometheus-client encodes it; Prometheus asks for it first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// Encodes one counter family with no labels for each `(name, help, value)`.
pub fn encode_counters(
    encoder: &mut DescriptorEncoder,
    counters: &[(&str, &str, u64)],
) -> Result<(), std::fmt::Error> {
    for &(name, help, value) in counters {
        single(encoder, name, help, None, ConstCounter::new(value))?;
    }
    Ok(())
}

/// Encodes one gauge family with no labels for each `(name, help, value)`.
pub fn encode_gauges(
    encoder: &mut DescriptorEncoder,
    gauges: &[(&str, &str, u64)],
) -> Result<(), std::fmt::Error> {
    for &(name, help, value) in gauges {
        single(encoder, name, help, None, gauge(value))?;
    }
    Ok(())
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

/// Encodes the front door's families (see the module's table), named `<prefix>_...`.
pub fn encode_door(
    encoder: &mut DescriptorEncoder,
    prefix: &str,
    door: &Door,
) -> Result<(), std::fmt::Error> {
    encode_commands(encoder, prefix, door)?;
    encode_errors(encoder, prefix, door)?;
    encode_connections(encoder, prefix, door)
}

fn encode_commands(
    encoder: &mut DescriptorEncoder,
    prefix: &str,
    door: &Door,
) -> Result<(), std::fmt::Error> {
    let totals = door.stats.command_totals();
    let named: Vec<(&str, &CommandTotals)> = totals
        .iter()
        .enumerate()
        .filter(|(_, t)| t.calls > 0 || t.rejected > 0 || t.failed > 0)
        .map(|(id, t)| (command_name(id), t))
        .collect();
    let name = format!("{prefix}_commands");
    let mut family = encoder.encode_descriptor(
        &name,
        "Commands by name and result: ok, error (ran and answered an error), rejected (refused before running).",
        None,
        MetricType::Counter,
    )?;
    for (name, t) in &named {
        let ok = t.calls.saturating_sub(t.failed);
        for (result, value) in [("ok", ok), ("error", t.failed), ("rejected", t.rejected)] {
            let labels = [("command", *name), ("result", result)];
            counter(&mut family, &labels, value)?;
        }
    }
    let name = format!("{prefix}_command_duration");
    let mut family = encoder.encode_descriptor(
        &name,
        "Time spent running each command.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (name, t) in named.iter().filter(|(_, t)| t.calls > 0) {
        let buckets = histogram_buckets(&t.latency);
        family
            .encode_family(&[("command", *name)])?
            .encode_histogram::<NoLabelSet>(t.usec as f64 / 1e6, t.calls, &buckets, None)?;
    }
    Ok(())
}

fn command_name(id: usize) -> &'static str {
    u32::try_from(id)
        .ok()
        .and_then(|id| table().name(id))
        .unwrap_or("unknown")
}

fn encode_errors(
    encoder: &mut DescriptorEncoder,
    prefix: &str,
    door: &Door,
) -> Result<(), std::fmt::Error> {
    let errors = door.stats.errors();
    let name = format!("{prefix}_errors");
    let mut family = encoder.encode_descriptor(
        &name,
        "Error replies by error code.",
        None,
        MetricType::Counter,
    )?;
    for (code, count) in &errors {
        counter(&mut family, &[("code", code.as_str())], *count)?;
    }
    Ok(())
}

fn encode_connections(
    encoder: &mut DescriptorEncoder,
    prefix: &str,
    door: &Door,
) -> Result<(), std::fmt::Error> {
    let stats = &door.stats;
    single(
        encoder,
        &format!("{prefix}_connected_clients"),
        "Connected RESP clients.",
        None,
        gauge(door.clients.count()),
    )?;
    let counters = [
        (
            "connections_received",
            "RESP connections accepted.",
            &stats.connections_received,
        ),
        (
            "connections_rejected",
            "RESP connections refused (maxclients).",
            &stats.rejected_connections,
        ),
        (
            "command_panics",
            "Commands that panicked (a bug; the connection was closed, the process kept running).",
            &stats.command_panics,
        ),
        (
            "query_buffer_disconnections",
            "Clients closed for exceeding client-query-buffer-limit.",
            &stats.query_buffer_disconnections,
        ),
        (
            "output_buffer_disconnections",
            "Clients closed for exceeding client-output-buffer-limit.",
            &stats.output_buffer_disconnections,
        ),
        (
            "protocol_errors",
            "Clients closed for a malformed request.",
            &stats.protocol_errors,
        ),
        (
            "cross_protocol_attempts",
            "Clients closed for sending POST or Host: as a command (an HTTP request to the RESP port).",
            &stats.cross_protocol_attempts,
        ),
    ];
    for (name, help, value) in counters {
        let value = ConstCounter::new(value.load(Relaxed));
        single(encoder, &format!("{prefix}_{name}"), help, None, value)?;
    }
    let (input, output) = stats.net_bytes();
    let bytes = Some(&Unit::Bytes);
    single(
        encoder,
        &format!("{prefix}_net_input"),
        "Bytes read from RESP clients.",
        bytes,
        ConstCounter::new(input),
    )?;
    single(
        encoder,
        &format!("{prefix}_net_output"),
        "Bytes written to RESP clients.",
        bytes,
        ConstCounter::new(output),
    )
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
