//! Counting the HTTP API's requests: [`HttpStats`], by method, status code and latency, and
//! its two Prometheus families.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use prometheus_client::metrics::counter::ConstCounter;
use shoal_frontdoor::metrics::{
    LATENCY_BUCKETS_US, counter, histogram_buckets, latency_slot, single,
};

/// The HTTP methods counted apart; any other counts as `other`.
const METHODS: [&str; 5] = ["GET", "HEAD", "POST", "DELETE", "other"];
/// Status codes are counted in one slot each from 100 to 599.
const FIRST_STATUS: u16 = 100;
const STATUS_SLOTS: usize = 500;
/// Latency buckets plus the overflow slot.
const LATENCY_SLOTS: usize = LATENCY_BUCKETS_US.len() + 1;

/// Latency of the HTTP requests of one method.
struct MethodLatency {
    count: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; LATENCY_SLOTS],
}

impl Default for MethodLatency {
    fn default() -> Self {
        MethodLatency {
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Counters of the HTTP API: requests by method and status code, latency by method.
///
/// Fixed tables of atomics, so recording a request takes no lock and allocates nothing. Each
/// [`router`](crate::router) has its own.
pub struct HttpStats {
    /// `requests[method * STATUS_SLOTS + status - 100]`.
    requests: Box<[AtomicU64]>,
    latency: [MethodLatency; METHODS.len()],
    /// What the server turned away or closed of the connections themselves.
    pub connections: ConnectionStats,
}

/// What the server counts of the connections it guards against ([`crate::serve`]).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections turned away because `http-maxclients` were open.
    pub rejected: AtomicU64,
    /// Connections closed because headers did not arrive within `http-timeout` (a slow
    /// client, or one idle between requests).
    pub timed_out: AtomicU64,
}

impl Default for HttpStats {
    fn default() -> Self {
        HttpStats {
            requests: (0..METHODS.len() * STATUS_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: std::array::from_fn(|_| MethodLatency::default()),
            connections: ConnectionStats::default(),
        }
    }
}

impl std::fmt::Debug for HttpStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStats").finish_non_exhaustive()
    }
}

impl HttpStats {
    /// Records one answered request.
    pub fn record(&self, method: &Method, status: StatusCode, elapsed: Duration) {
        let m = method_index(method);
        let slot = usize::from(status.as_u16().saturating_sub(FIRST_STATUS)).min(STATUS_SLOTS - 1);
        self.requests[m * STATUS_SLOTS + slot].fetch_add(1, Relaxed);
        let usec = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let latency = &self.latency[m];
        latency.count.fetch_add(1, Relaxed);
        latency.sum_us.fetch_add(usec, Relaxed);
        latency.buckets[latency_slot(usec)].fetch_add(1, Relaxed);
    }

    /// Requests answered so far with `status` to `method` (`"other"` for unlisted methods).
    pub fn requests(&self, method: &str, status: u16) -> u64 {
        let Some(m) = METHODS.iter().position(|&n| n == method) else {
            return 0;
        };
        let slot = usize::from(status.saturating_sub(FIRST_STATUS));
        if slot >= STATUS_SLOTS {
            return 0;
        }
        self.requests[m * STATUS_SLOTS + slot].load(Relaxed)
    }

    /// Every non-zero (method, status code, count).
    fn request_counts(&self) -> impl Iterator<Item = (&'static str, u16, u64)> + '_ {
        self.requests.iter().enumerate().filter_map(|(i, c)| {
            let count = c.load(Relaxed);
            let status = FIRST_STATUS + u16::try_from(i % STATUS_SLOTS).ok()?;
            (count > 0).then(|| (METHODS[i / STATUS_SLOTS], status, count))
        })
    }

    /// Encodes the two families, for a collector's `encode`:
    ///
    /// | name | type | labels |
    /// | --- | --- | --- |
    /// | `<prefix>_http_requests_total` | counter | `method` (`GET`, `HEAD`, `POST`, `DELETE`, `other`), `code` |
    /// | `<prefix>_http_request_duration_seconds` | histogram ([`LATENCY_BUCKETS_US`]) | `method` |
    pub fn encode(
        &self,
        encoder: &mut DescriptorEncoder,
        prefix: &str,
    ) -> Result<(), std::fmt::Error> {
        let requests = format!("{prefix}_http_requests");
        let mut family = encoder.encode_descriptor(
            &requests,
            "HTTP API requests by method and status code.",
            None,
            MetricType::Counter,
        )?;
        for (method, status, count) in self.request_counts() {
            let labels = ([("method", method)], [("code", status)]);
            counter(&mut family, &labels, count)?;
        }
        let duration = format!("{prefix}_http_request_duration");
        let mut family = encoder.encode_descriptor(
            &duration,
            "Time to answer HTTP API requests, by method.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (method, latency) in METHODS.iter().zip(&self.latency) {
            let count = latency.count.load(Relaxed);
            if count == 0 {
                continue;
            }
            let slots: Vec<u64> = latency.buckets.iter().map(|b| b.load(Relaxed)).collect();
            let sum = latency.sum_us.load(Relaxed) as f64 / 1e6;
            family
                .encode_family(&[("method", *method)])?
                .encode_histogram::<NoLabelSet>(sum, count, &histogram_buckets(&slots), None)?;
        }
        for (name, help, value) in [
            (
                "http_connections_rejected",
                "HTTP connections turned away because http-maxclients were open.",
                &self.connections.rejected,
            ),
            (
                "http_connections_timed_out",
                "HTTP connections closed because a request's headers did not come within http-timeout.",
                &self.connections.timed_out,
            ),
        ] {
            let value = ConstCounter::new(value.load(Relaxed));
            single(encoder, &format!("{prefix}_{name}"), help, None, value)?;
        }
        Ok(())
    }
}

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::DELETE => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_client::collector::Collector;

    use super::*;
    use shoal_frontdoor::metrics::Exporter;

    #[derive(Debug)]
    struct Http(Arc<HttpStats>);

    impl Collector for Http {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            self.0.encode(&mut encoder, "test")
        }
    }

    #[test]
    fn requests_are_counted_by_method_code_and_latency() {
        let http = Arc::new(HttpStats::default());
        let answered = [
            (Method::DELETE, 204, 3),
            (Method::DELETE, 204, 3),
            (Method::DELETE, 200, 3),
            (Method::PUT, 418, u64::MAX),
        ];
        for (method, status, us) in &answered {
            let status = StatusCode::from_u16(*status).expect("a status code");
            http.record(method, status, Duration::from_micros(*us));
        }
        // Unlisted methods count as `other`; nothing is counted past 599.
        let counted = [
            ("DELETE", 204, 2),
            ("other", 418, 1),
            ("PUT", 418, 0),
            ("DELETE", 700, 0),
        ];
        for (method, status, count) in counted {
            assert_eq!(http.requests(method, status), count, "{method} {status}");
        }
        let text = Exporter::new(Http(http)).render();
        let samples = [
            (r#"test_http_requests_total{method="DELETE",code="204"}"#, 2),
            (r#"test_http_requests_total{method="DELETE",code="200"}"#, 1),
            (r#"test_http_requests_total{method="other",code="418"}"#, 1),
            (
                r#"test_http_request_duration_seconds_count{method="DELETE"}"#,
                3,
            ),
            (
                r#"test_http_request_duration_seconds_bucket{le="0.000002",method="DELETE"}"#,
                0,
            ),
            (
                r#"test_http_request_duration_seconds_bucket{le="0.000004",method="DELETE"}"#,
                3,
            ),
            (
                r#"test_http_request_duration_seconds_bucket{le="1.048576",method="other"}"#,
                0,
            ),
            (
                r#"test_http_request_duration_seconds_bucket{le="+Inf",method="other"}"#,
                1,
            ),
        ];
        for (series, value) in samples {
            let line = format!("{series} {value}");
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains(r#"method="GET""#),
            "unused methods are skipped"
        );
    }
}
