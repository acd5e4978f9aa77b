//! The monitoring kit in `deploy/` against real processes: every metric the Grafana dashboard
//! (`deploy/grafana/shoal-dashboard.json`) and the Prometheus alert rules
//! (`deploy/prometheus/shoal-alerts.yml`) name is one a node or a proxy exports, so a renamed
//! metric cannot leave a panel empty or an alert silent.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use shoal_testkit::{ClusterOptions, TestCluster};

mod common;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// The series names on a `/metrics` page (`name` of each `name{labels} value` line).
async fn series(http_addr: &str) -> BTreeSet<String> {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{http_addr}/metrics");
    let body = http.get(&url).send().await.unwrap().text().await.unwrap();
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

/// The metric names (`shoal_...`, `process_...`) in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &expr[i..];
        if word_start && (rest.starts_with("shoal_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..len].to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

/// The PromQL expressions of the dashboard's panels, with each panel's title.
fn dashboard_exprs(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "a dashboard of {} panels", panels.len());
    let mut exprs = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("a panel title").to_string();
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            exprs.push((title.clone(), expr.to_string()));
        }
    }
    exprs
}

/// The alert rules: (alert, expr), checking each has a severity and a summary.
fn alert_exprs(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rules = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            current = Some(name.to_string());
        } else if let Some(expr) = line.strip_prefix("expr: ") {
            let alert = current.clone().expect("an expr belongs to an alert");
            rules.push((alert, expr.to_string()));
        }
    }
    let severities = text.matches("severity: ").count();
    let summaries = text.matches("summary: ").count();
    assert_eq!(
        (severities, summaries),
        (rules.len(), rules.len()),
        "every alert has a severity and a summary"
    );
    rules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_name_is_exported() {
    shoal_testkit::run_alone("monitoring", TEST_LIMIT, async {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut wanted: Vec<(String, String)> = Vec::new();
        for (title, expr) in dashboard_exprs(&root.join("deploy/grafana/shoal-dashboard.json")) {
            wanted.extend(metric_names(&expr).into_iter().map(|m| (title.clone(), m)));
        }
        let alerts = alert_exprs(&root.join("deploy/prometheus/shoal-alerts.yml"));
        assert!(alerts.len() >= 8, "{alerts:?}");
        for (alert, expr) in alerts {
            wanted.extend(metric_names(&expr).into_iter().map(|m| (alert.clone(), m)));
        }
        assert!(wanted.len() > 20, "{wanted:?}");

        // A primary and its replica (replication's series), and a proxy with a near cache.
        let cluster = TestCluster::start(SHOAL, 1, 1, ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let (proxy, proxy_resp, proxy_http) =
            common::spawn_proxy(SHOAL, &cluster, &["--near-cache", "1mb"]);
        // Traffic, so that the command, latency and error series exist.
        let started = std::time::Instant::now();
        loop {
            let set = shoal_testkit::resp::command(
                &proxy_resp,
                &["SET", "k", "v"],
                Duration::from_secs(2),
            )
            .await;
            if set.is_ok() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the proxy never answered: {set:?}\n{}",
                proxy.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for command in [&["GET", "k"][..], &["GET", "k"], &["NOPE"]] {
            let _ =
                shoal_testkit::resp::command(&proxy_resp, command, Duration::from_secs(2)).await;
        }
        let mut exported = series(&proxy_http).await;
        for i in 0..cluster.resp_addrs().len() {
            let node = cluster.node(i);
            let _ = node.command(&["NOPE"]).await;
            let addr = node.http_addr().expect("nodes serve HTTP").to_string();
            exported.extend(series(&addr).await);
        }
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(_, metric)| !exported.contains(metric))
            .map(|(panel, metric)| format!("{metric} (in {panel})"))
            .collect();
        assert!(
            missing.is_empty(),
            "named but not exported: {missing:?}\nexported: {exported:?}"
        );
    })
    .await;
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(shoal_command_duration_seconds_bucket[1m]))) / process_cpu_seconds_total and up == 0 and my_shoal_x"
        ),
        [
            "shoal_command_duration_seconds_bucket",
            "process_cpu_seconds_total"
        ]
    );
}
