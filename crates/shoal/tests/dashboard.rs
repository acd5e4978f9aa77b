//! The dashboard in a real browser: a 3x3 cluster of `shoal` processes with a password, one key
//! made hot on its primary, and `/dashboard` rendered by headless Chromium (its script polls
//! `/cluster` with the credentials the browser was given). The page must show every node by
//! address with its role, and the hot key. Skipped (a failure with `SHOAL_REQUIRE_REDIS=1`)
//! without `chromium`.

use std::time::Duration;

use serde_json::Value;
use shoal_cluster::ClusterMap;
use shoal_cluster::bus::ClusterStatus;
use shoal_testkit::{ClusterOptions, TestCluster, browser, have_chromium};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// The nodes' password.
const PASSWORD: &str = "dash-pw";

/// The key made hot.
const HOT_KEY: &str = "dash:hot";

/// No wait of this test may run longer than this.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// `GET /cluster` of the node at `http_addr`, with `password` if given: its status and body.
async fn view(http_addr: &str, password: Option<&str>) -> (u16, Value) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = http.get(format!("http://{http_addr}/cluster"));
    if let Some(password) = password {
        request = request.basic_auth("default", Some(password));
    }
    let response = request.send().await.expect("the HTTP request completes");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Reads [`HOT_KEY`] `times` times on its primary, pipelined, so that the primary's background
/// sample (one command in 64) counts it.
async fn make_hot(map: &ClusterMap, times: usize) {
    let slot = shoal_cluster::key_slot(HOT_KEY.as_bytes());
    let shard = map.slots.get(slot).expect("every slot is owned");
    let owner = map.shards.iter().find(|s| s.id == shard).unwrap().primary;
    let addr = map.node(owner).unwrap().resp_addr();
    let url = format!("redis://:{PASSWORD}@{addr}/");
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("RESP connects to the primary");
    let _: () = redis::cmd("SET")
        .arg(HOT_KEY)
        .arg("v")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let mut reads = redis::pipe();
    for _ in 0..times {
        reads.cmd("GET").arg(HOT_KEY);
    }
    let _: Vec<Option<String>> = reads.query_async(&mut conn).await.expect("GETs");
}

/// Whether a node of `status` reports [`HOT_KEY`] among its hot keys.
fn reports_hot_key(status: &ClusterStatus) -> bool {
    status
        .nodes
        .iter()
        .any(|n| n.stats.hot_keys.iter().any(|h| h.key == HOT_KEY.as_bytes()))
}

/// The rows (`<tr>...</tr>`) of the table with id `id` in the rendered `dom`.
fn rows<'a>(dom: &'a str, id: &str) -> Vec<&'a str> {
    let start = dom
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id} in:\n{dom}"));
    let table = &dom[start..];
    let table = &table[..table.find("</table>").expect("the table ends")];
    let body = &table[table.find("<tbody>").expect("a body")..];
    body.split("<tr>").skip(1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_every_node_its_role_and_the_hot_key_in_a_browser() {
    let test = "the_dashboard_shows_every_node_its_role_and_the_hot_key_in_a_browser";
    if !have_chromium(test) {
        return;
    }
    let options = ClusterOptions {
        requirepass: Some(PASSWORD.into()),
        ..ClusterOptions::default()
    };
    let cluster = TestCluster::start(SHOAL, 3, 2, options)
        .await
        .expect("the cluster starts");
    let status = cluster.status().await.expect("a status");
    make_hot(&status.map, 4000).await;
    // Hot keys reach the leader with the next heartbeats.
    let status = cluster
        .wait_until("the hot key in a heartbeat", WAIT_LIMIT, reports_hot_key)
        .await
        .expect("the primary reports the hot key");
    let map = &status.map;

    let http = cluster.node(4).http_addr().expect("nodes serve HTTP");
    let (code, refused) = view(&http, None).await;
    assert_eq!(code, 401, "{refused}");
    let (code, json) = view(&http, Some(PASSWORD)).await;
    assert_eq!(code, 200, "{json}");
    assert_eq!(json["mode"], "cluster");
    assert_eq!(json["nodes"].as_array().unwrap().len(), 9, "{json}");
    assert_eq!(json["shards"].as_array().unwrap().len(), 3, "{json}");
    assert!(
        json["hot_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["key"] == HOT_KEY),
        "{json}"
    );

    // The key stays hot while the browser renders: the nodes' samples halve every second, so a
    // burst read once fades within seconds. Bounded in rounds and time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keep_hot = {
        let (map, stop) = (map.clone(), stop.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            for _ in 0..600 {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || started.elapsed() > Duration::from_secs(90)
                {
                    break;
                }
                make_hot(&map, 1000).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // The browser is given the password in the URL: it answers the page's challenge with it,
    // and sends it again with the page's own requests to /cluster.
    let url = format!("http://default:{PASSWORD}@{http}/dashboard");
    // Chromium takes most of this 2-core machine while it renders, so the page may catch the
    // cluster at a moment its heartbeats run late and its hot keys are not reported: render
    // again then (three times at most).
    let mut dom = String::new();
    for _ in 0..3 {
        dom = browser::dump_dom(&url, Duration::from_secs(5), Duration::from_secs(60))
            .await
            .expect("chromium renders the dashboard");
        if rows(&dom, "hotkeys")
            .iter()
            .any(|r| r.contains(&format!(">{HOT_KEY}</td>")))
        {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    keep_hot.await.expect("the reader ends");
    assert!(
        dom.contains("every second"),
        "the page updated itself:\n{dom}"
    );
    let nodes = rows(&dom, "nodes");
    assert_eq!(nodes.len(), 9, "a row per node:\n{dom}");
    for node in map.nodes.values() {
        let address = node.resp_addr();
        let row = nodes
            .iter()
            .find(|r| r.contains(&format!(">{address}<")))
            .unwrap_or_else(|| panic!("no row for {address}:\n{dom}"));
        let role = match map.placement_of(node.id) {
            Some((_, shoal_cluster::Role::Primary)) => "primary",
            Some((_, shoal_cluster::Role::Replica)) => "replica",
            None => "spare",
        };
        assert!(
            row.contains(&format!("<td>{role}</td>")),
            "{address} {role}: {row}"
        );
        assert!(
            row.contains("<span class=\"pill "),
            "{address}'s health: {row}"
        );
    }
    let hot = rows(&dom, "hotkeys");
    assert!(
        hot.iter().any(|r| r.contains(&format!(">{HOT_KEY}</td>"))),
        "the hot key is listed:\n{dom}"
    );
}
