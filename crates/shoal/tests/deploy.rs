//! What a deployment relies on, checked without Kubernetes (docs/deployment.md):
//!
//! * The manifests of `deploy/kubernetes`, parsed: the StatefulSet's service is headless, its
//!   container exposes the RESP, HTTP and bus ports, probes ask `/health` on the HTTP port, a
//!   claimed volume is mounted where `--dir` points, the PodDisruptionBudget selects the pods,
//!   the kustomization lists every file, the preStop hook runs the script that drains, and
//!   `--maxmemory` leaves the process room under the memory limit.
//! * The pods' scripts, run by `sh`: the entrypoint (with a stand-in `shoal` that records what
//!   it is given) derives founding or joining from the pod's name and directory, and the real
//!   binary takes the flags it ends with; the preStop hook, against a real cluster, leaves an
//!   unmarked node alone and removes a marked one, whose keys move to the other shards.
//! * Node behaviours the pods use: joining through a DNS name (the seed given as `localhost`,
//!   not an IP), and `shoal cluster myid` naming the node as its `CLUSTER MYID` does.
//! * Ignored, since it fails today: controller voters that come back on new IP addresses, as
//!   recreated pods do (docs/deployment.md, "Limits").
//!
//! Restarts with `--dir`, `/health` while a node has not joined, and SIGTERM's hand-over are
//! tested elsewhere (docs/deployment.md, "What is tested"). Nodes listen on 127.0.0.1 only;
//! every wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize as _;
use serde_yaml::Value as Yaml;
use shoal_testkit::resp::text;
use shoal_testkit::{
    ClusterOptions, NodePorts, NodeProcess, NodeSpec, TestCluster, TestDir, Value,
};

mod common;
const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test with real nodes may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(150);

/// How long a node may take to be taken in.
const SETTLE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The manifests.

/// `deploy/kubernetes` in the repository.
fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// Every file under `dir`, relative to it, in order.
fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                out.insert(relative.to_str().unwrap().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// Every YAML document of every `.yaml` file under `deploy/kubernetes`, with its file.
fn documents() -> Vec<(String, Yaml)> {
    let dir = manifests_dir();
    let mut docs = Vec::new();
    for file in files_under(&dir) {
        if !(file.ends_with(".yaml") || file.ends_with(".yml")) {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(&file)).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = Yaml::deserialize(document)
                .unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
            if value != Yaml::Null {
                docs.push((file.clone(), value));
            }
        }
    }
    docs
}

/// The one document of `kind` (and `name`, if given).
fn one<'a>(docs: &'a [(String, Yaml)], kind: &str, name: Option<&str>) -> &'a Yaml {
    let found: Vec<&Yaml> = docs
        .iter()
        .map(|(_, doc)| doc)
        .filter(|doc| doc["kind"].as_str() == Some(kind))
        .filter(|doc| name.is_none_or(|n| doc["metadata"]["name"].as_str() == Some(n)))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name:?} in deploy/kubernetes");
    found[0]
}

/// `value` as a string, or a failure naming `what`.
fn string<'a>(value: &'a Yaml, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

/// `value` as a sequence (empty when missing).
fn seq(value: &Yaml) -> &[Yaml] {
    value.as_sequence().map_or(&[], |s| s.as_slice())
}

/// A `matchLabels` or `labels` mapping as name -> value.
fn labels(value: &Yaml) -> BTreeMap<String, String> {
    value
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        string(k, "a label").to_string(),
                        string(v, "a label").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The value of flag `--name` in `args` (`--name value` or `--name=value`).
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let long = format!("--{name}");
    let joined = format!("--{name}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if *arg == long {
            args.get(i + 1).map(String::as_str)
        } else {
            arg.strip_prefix(&joined)
        }
    })
}

/// The StatefulSet's one container, `shoal`.
fn container(statefulset: &Yaml) -> &Yaml {
    let containers = seq(&statefulset["spec"]["template"]["spec"]["containers"]);
    containers
        .iter()
        .find(|c| c["name"].as_str() == Some("shoal"))
        .expect("a container named shoal")
}

/// The container's arguments.
fn args(container: &Yaml) -> Vec<String> {
    seq(&container["args"])
        .iter()
        .map(|a| string(a, "an argument").to_string())
        .collect()
}

/// The literal value of the container's environment variable `name`.
fn env(container: &Yaml, name: &str) -> Option<String> {
    seq(&container["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .and_then(|e| e["value"].as_str().map(String::from))
}

/// The container port a probe's or a Service's `port` means: a number, or a port's name.
fn container_port(container: &Yaml, port: &Yaml) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = string(port, "a port");
    seq(&container["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// Bytes in a Kubernetes quantity (`1Gi`, `512Mi`, `1G`, plain bytes).
fn quantity(text: &str) -> u64 {
    let units: [(&str, u64); 6] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("K", 1000),
        ("M", 1000 * 1000),
        ("G", 1000 * 1000 * 1000),
    ];
    for (suffix, unit) in units {
        if let Some(n) = text.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * unit;
        }
    }
    text.parse().unwrap()
}

/// Bytes in one of Shoal's sizes (`640mb`, `1gb`: Redis's units, 1024-based).
fn shoal_size(text: &str) -> u64 {
    let units: [(&str, u64); 3] = [("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10)];
    for (suffix, unit) in units {
        if let Some(n) = text.to_ascii_lowercase().strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * unit;
        }
    }
    text.parse().unwrap()
}

#[test]
fn the_kustomization_lists_every_file_and_every_listed_file_exists() {
    let dir = manifests_dir();
    let docs = documents();
    let kustomization = one(&docs, "Kustomization", None);
    let mut listed = BTreeSet::new();
    for resource in seq(&kustomization["resources"]) {
        listed.insert(string(resource, "a resource").to_string());
    }
    for generator in seq(&kustomization["configMapGenerator"]) {
        for file in seq(&generator["files"]) {
            // `key=path` or `path`.
            let file = string(file, "a generator file");
            listed.insert(file.rsplit('=').next().unwrap().to_string());
        }
    }
    for file in &listed {
        assert!(dir.join(file).is_file(), "listed but missing: {file}");
    }
    let mut present = files_under(&dir);
    present.remove("kustomization.yaml");
    assert_eq!(
        listed, present,
        "the kustomization must list every file of deploy/kubernetes"
    );
    // Every document is a Kubernetes object (or the kustomization), named.
    for (file, doc) in &docs {
        assert!(
            doc["apiVersion"].as_str().is_some(),
            "{file}: no apiVersion"
        );
        assert!(doc["kind"].as_str().is_some(), "{file}: no kind");
        if doc["kind"].as_str() != Some("Kustomization") {
            assert!(
                doc["metadata"]["name"].as_str().is_some(),
                "{file}: no name"
            );
        }
    }
}

#[test]
fn the_statefulset_runs_nodes_the_services_and_the_pdb_can_find() {
    let docs = documents();
    let statefulset = one(&docs, "StatefulSet", None);
    let spec = &statefulset["spec"];
    let pod_labels = labels(&spec["template"]["metadata"]["labels"]);
    let selector = labels(&spec["selector"]["matchLabels"]);
    assert!(!selector.is_empty(), "the StatefulSet selects its pods");
    for (k, v) in &selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "the pods carry the selector's {k}"
        );
    }
    let policy = string(&spec["podManagementPolicy"], "podManagementPolicy");
    assert!(["Parallel", "OrderedReady"].contains(&policy), "{policy}");

    // serviceName names the headless Service, which publishes every pod, ready or not.
    let service_name = string(&spec["serviceName"], "serviceName");
    let headless = one(&docs, "Service", Some(service_name));
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true),
        "pods must find pod 0 before it is ready"
    );

    // The container's ports: RESP, HTTP and the bus (RESP + 10000), as the node's settings say.
    let shoal = container(statefulset);
    let resp: u64 = env(shoal, "SHOAL_PORT").map_or(6379, |p| p.parse().unwrap());
    let http: u64 = env(shoal, "SHOAL_HTTP_PORT").map_or(8080, |p| p.parse().unwrap());
    assert_eq!(resp, 6379);
    let ports: BTreeSet<u64> = seq(&shoal["ports"])
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    for port in [resp, http, resp + 10_000] {
        assert!(ports.contains(&port), "container port {port}: {ports:?}");
    }

    // Both Services select the pods and reach named container ports; the headless one
    // carries the bus too.
    for service in docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"].as_str() == Some("Service"))
    {
        let name = string(&service["metadata"]["name"], "a Service's name");
        for (k, v) in labels(&service["spec"]["selector"]) {
            assert_eq!(
                pod_labels.get(&k),
                Some(&v),
                "Service {name} selects the pods"
            );
        }
        for port in seq(&service["spec"]["ports"]) {
            let target = container_port(shoal, &port["targetPort"]);
            assert_eq!(
                port["port"].as_u64(),
                Some(target),
                "Service {name}: {port:?}"
            );
        }
    }
    let headless_ports: BTreeSet<u64> = seq(&headless["spec"]["ports"])
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert!(headless_ports.contains(&resp) && headless_ports.contains(&(resp + 10_000)));

    // Readiness and liveness ask /health on the HTTP port.
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &shoal[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/health"), "{probe}");
        assert_eq!(container_port(shoal, &get["port"]), http, "{probe}");
    }

    // A claimed volume is mounted where --dir points.
    let args = args(shoal);
    let dir = flag(&args, "dir").expect("the node is given --dir");
    let claims: Vec<&str> = seq(&spec["volumeClaimTemplates"])
        .iter()
        .map(|c| string(&c["metadata"]["name"], "a claim's name"))
        .collect();
    let mount = seq(&shoal["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(dir))
        .unwrap_or_else(|| panic!("nothing is mounted at --dir {dir}"));
    let mounted = string(&mount["name"], "a mount's volume");
    assert!(
        claims.contains(&mounted),
        "--dir {dir} is volume {mounted}, not one of the claims {claims:?}"
    );
    assert!(
        flag(&args, "bind").is_some(),
        "a pod's node listens beyond 127.0.0.1"
    );

    // The PodDisruptionBudget lets one pod go at a time, and selects the StatefulSet's pods.
    let pdb = one(&docs, "PodDisruptionBudget", None);
    assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(1));
    let pdb_selector = labels(&pdb["spec"]["selector"]["matchLabels"]);
    assert!(!pdb_selector.is_empty());
    for (k, v) in &pdb_selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "the PDB selects the pods by {k}"
        );
    }
    assert_eq!(
        pdb_selector, selector,
        "the PDB selects exactly the StatefulSet's pods"
    );
}

#[test]
fn the_pods_run_the_scripts_and_drain_in_their_pre_stop_hook() {
    let docs = documents();
    let kustomization = one(&docs, "Kustomization", None);
    let statefulset = one(&docs, "StatefulSet", None);
    let pod = &statefulset["spec"]["template"]["spec"];
    let shoal = container(statefulset);

    // The scripts' ConfigMap, as the kustomization generates it, mounted somewhere.
    let generator = seq(&kustomization["configMapGenerator"])
        .iter()
        .find(|g| g["name"].as_str() == Some("shoal-scripts"))
        .expect("a generated ConfigMap shoal-scripts");
    let scripts: BTreeSet<String> = seq(&generator["files"])
        .iter()
        .map(|f| {
            let f = string(f, "a file");
            Path::new(f.rsplit('=').next().unwrap())
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let volume = seq(&pod["volumes"])
        .iter()
        .find(|v| v["configMap"]["name"].as_str() == Some("shoal-scripts"))
        .expect("a volume of the scripts' ConfigMap");
    let volume_name = string(&volume["name"], "a volume's name");
    let mount = seq(&shoal["volumeMounts"])
        .iter()
        .find(|m| m["name"].as_str() == Some(volume_name))
        .expect("the scripts are mounted");
    let at = Path::new(string(&mount["mountPath"], "a mount path"));
    // A command `[sh, <mount>/<script>]` runs one of the ConfigMap's scripts.
    let runs = |command: &Yaml, script: &str| {
        let words: Vec<&str> = seq(command)
            .iter()
            .map(|w| string(w, "a command's word"))
            .collect();
        scripts.contains(script) && words.contains(&at.join(script).to_str().unwrap())
    };
    assert!(
        runs(&shoal["command"], "entrypoint.sh"),
        "{:?}",
        shoal["command"]
    );
    let pre_stop = &shoal["lifecycle"]["preStop"]["exec"]["command"];
    assert!(runs(pre_stop, "pre-stop.sh"), "preStop: {pre_stop:?}");

    // Time for a drain before SIGKILL.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(grace >= 300, "terminationGracePeriodSeconds {grace}");

    // The cluster secret and the password come from one Secret.
    let secret_volume = seq(&pod["volumes"])
        .iter()
        .find_map(|v| v["secret"]["secretName"].as_str())
        .expect("a Secret volume (the cluster secret)");
    let env_secrets: BTreeSet<&str> = seq(&shoal["env"])
        .iter()
        .filter_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
        .collect();
    assert_eq!(env_secrets, BTreeSet::from([secret_volume]));
    for name in ["SHOAL_REQUIREPASS", "SHOAL_PASSWORD"] {
        assert!(
            seq(&shoal["env"])
                .iter()
                .any(|e| e["name"].as_str() == Some(name)
                    && e["valueFrom"]["secretKeyRef"].is_mapping()),
            "{name} from the Secret"
        );
    }
    // The pod's address, from the downward API.
    let pod_ip = seq(&shoal["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some("POD_IP"))
        .expect("POD_IP");
    assert_eq!(
        pod_ip["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("status.podIP")
    );
}

#[test]
fn maxmemory_leaves_the_process_room_under_the_memory_limit() {
    let docs = documents();
    let shoal = container(one(&docs, "StatefulSet", None));
    let args = args(shoal);
    let maxmemory = shoal_size(flag(&args, "maxmemory").expect("--maxmemory is set"));
    let limit = quantity(string(
        &shoal["resources"]["limits"]["memory"],
        "the memory limit",
    ));
    assert!(maxmemory > 0);
    // RSS at the limit measures up to 1.24x maxmemory (README, "Memory"); a primary keeps a
    // replication backlog (64 MiB by default) and HTTP bodies in flight (as set) besides.
    let backlog = flag(&args, "repl-backlog-size").map_or(64 << 20, shoal_size);
    let inflight = flag(&args, "http-max-inflight-bytes").map_or(1 << 30, shoal_size);
    let needed = maxmemory * 124 / 100 + backlog + inflight + (8 << 20);
    assert!(
        needed < limit,
        "maxmemory {maxmemory} needs about {needed} bytes: more than the limit {limit}"
    );
    assert_eq!(
        quantity(string(
            &shoal["resources"]["requests"]["memory"],
            "the request"
        )),
        limit,
        "memory requested as limited: the scheduler must count what the node may use"
    );
}

// ---------------------------------------------------------------------------------------------
// The entrypoint, with a stand-in `shoal`.

/// A stand-in for `shoal`: `shoal cluster status --node X` succeeds when X is in
/// `$STUB_MEMBERS` (and is recorded in `$STUB_DIR/probes`); anything else records its
/// arguments, one a line, in `$STUB_DIR/args`.
const STUB: &str = r#"#!/bin/sh
if [ "$1" = cluster ]; then
  echo "$*" >> "$STUB_DIR/probes"
  for member in $STUB_MEMBERS; do
    [ "$4" = "$member" ] && exit 0
  done
  exit 1
fi
for arg in "$@"; do printf '%s\n' "$arg"; done > "$STUB_DIR/args"
"#;

/// What the entrypoint made of one start.
struct Started {
    output: Output,
    /// What `shoal` was given (empty if it was not run).
    args: Vec<String>,
    /// The `shoal cluster status` probes it made.
    probes: Vec<String>,
}

/// Runs the entrypoint as pod `pod` would, with the StatefulSet's arguments (its `--dir`
/// pointing at `data`), the stand-in `shoal`, and `members` answering as cluster members.
fn start_pod(dir: &TestDir, pod: &str, data: &Path, members: &[&str]) -> Started {
    let docs = documents();
    let shoal = container(one(&docs, "StatefulSet", None));
    let mut args = args(shoal);
    let at = args.iter().position(|a| a == "--dir").unwrap();
    args[at + 1] = data.to_str().unwrap().to_string();

    let stub_dir = dir.join(&format!("stub-{pod}"));
    let bin = stub_dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for record in ["args", "probes"] {
        let _ = std::fs::remove_file(stub_dir.join(record));
    }
    let stub = bin.join("shoal");
    std::fs::write(&stub, STUB).unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = dir.join(&format!("run-{pod}"));
    std::fs::create_dir_all(&run).unwrap();
    // A mark left from an earlier start of the container.
    std::fs::write(run.join("remove-on-stop"), "").unwrap();
    let source = dir.join("secret-source");
    let _ = std::fs::remove_file(&source);
    std::fs::write(&source, "a cluster secret of more than thirty-two bytes\n").unwrap();
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o440)).unwrap();

    let output = Command::new("sh")
        .arg(manifests_dir().join("scripts/entrypoint.sh"))
        .args(&args)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("STUB_DIR", &stub_dir)
        .env("STUB_MEMBERS", members.join(" "))
        .env("POD_NAME", pod)
        .env("POD_NAMESPACE", "cache")
        .env("POD_IP", "10.1.2.3")
        .env("HEADLESS_SERVICE", "shoal-headless")
        .env("RUN_DIR", &run)
        .env("SEED_PROBES", "3")
        .env("CLUSTER_SECRET_SOURCE", &source)
        .env("SHOAL_CLUSTER_SECRET_FILE", run.join("cluster-secret"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let lines = |file: &str| -> Vec<String> {
        std::fs::read_to_string(stub_dir.join(file))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    };
    if output.status.success() {
        assert!(
            !run.join("remove-on-stop").exists(),
            "a stale removal mark must not survive a start"
        );
        let copy = run.join("cluster-secret");
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the secret's copy is private");
        assert_eq!(
            std::fs::read(&copy).unwrap(),
            std::fs::read(&source).unwrap()
        );
    }
    Started {
        args: lines("args"),
        probes: lines("probes"),
        output,
    }
}

/// The server flags the entrypoint added after the StatefulSet's arguments.
fn added(started: &Started) -> Vec<String> {
    assert!(started.output.status.success(), "{:?}", started.output);
    assert_eq!(started.args.first().map(String::as_str), Some("server"));
    let at = started
        .args
        .iter()
        .position(|a| a == "--cluster-announce-ip")
        .expect("the pod's IP is announced");
    started.args[at..].to_vec()
}

#[test]
fn pod_0_founds_the_cluster_and_the_others_join_it_by_dns_name() {
    let dir = TestDir::new("deploy_entrypoint").unwrap();
    let announce = |pod: &str| {
        vec![
            "--cluster-announce-ip".to_string(),
            "10.1.2.3".to_string(),
            "--cluster-announce-hostname".to_string(),
            format!("{pod}.shoal-headless.cache.svc.cluster.local"),
        ]
    };
    let with = |mut base: Vec<String>, more: &[&str]| {
        base.extend(more.iter().map(|s| s.to_string()));
        base
    };
    let pod0 = "shoal-0.shoal-headless.cache.svc.cluster.local:6379";

    // Another pod joins through pod 0's DNS name, asking nobody else.
    let new_data = dir.join("data-new");
    let started = start_pod(&dir, "shoal-3", &new_data, &[]);
    assert_eq!(
        added(&started),
        with(announce("shoal-3"), &["--cluster-join", pod0])
    );
    assert!(started.probes.is_empty(), "{:?}", started.probes);
    // The StatefulSet's own flags come first, unchanged.
    assert_eq!(flag(&started.args, "dir"), new_data.to_str());

    // Pod 0 with a new directory and nobody answering: it founds, after asking pods 1 to 3.
    let started = start_pod(&dir, "shoal-0", &new_data, &[]);
    assert_eq!(
        added(&started),
        with(announce("shoal-0"), &["--cluster-enabled"])
    );
    assert_eq!(started.probes.len(), 3, "{:?}", started.probes);
    assert_eq!(
        started.probes[0],
        "cluster status --node shoal-1.shoal-headless.cache.svc.cluster.local:6379"
    );

    // Pod 0 with a new directory while a cluster runs (it lost its volume): it joins that one
    // instead of founding a second.
    let member = "shoal-2.shoal-headless.cache.svc.cluster.local:6379";
    let started = start_pod(&dir, "shoal-0", &new_data, &[member]);
    assert_eq!(
        added(&started),
        with(announce("shoal-0"), &["--cluster-join", member])
    );

    // Pod 0 with its directory (a map in it): it comes back as itself, asking nobody.
    let kept = dir.join("data-kept");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::write(kept.join("map.json"), "{}").unwrap();
    let started = start_pod(&dir, "shoal-0", &kept, &[member]);
    assert_eq!(
        added(&started),
        with(announce("shoal-0"), &["--cluster-enabled"])
    );
    assert!(started.probes.is_empty(), "{:?}", started.probes);

    // A name without an ordinal is refused before anything runs.
    let started = start_pod(&dir, "shoal", &new_data, &[]);
    assert!(!started.output.status.success());
    assert!(started.args.is_empty());
    assert!(
        String::from_utf8_lossy(&started.output.stderr).contains("<statefulset>-<ordinal>"),
        "{:?}",
        started.output
    );
}

#[test]
fn the_node_takes_the_flags_a_pod_starts_it_with() {
    let dir = TestDir::new("deploy_pod_flags").unwrap();
    let docs = documents();
    let shoal_container = container(one(&docs, "StatefulSet", None));
    // The container's literal SHOAL_* settings (not those from the Secret).
    let settings: Vec<(String, String)> = seq(&shoal_container["env"])
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .filter(|(name, _)| name.starts_with("SHOAL_"))
        .collect();
    let data = dir.join("data");
    for (pod, join) in [
        ("shoal-0", None),
        (
            "shoal-4",
            Some("shoal-0.shoal-headless.cache.svc.cluster.local:6379"),
        ),
    ] {
        let started = start_pod(&dir, pod, &data, &[]);
        assert!(started.output.status.success(), "{:?}", started.output);
        // What the entrypoint would run, checked by the real binary.
        let out = Command::new(SHOAL)
            .args(&started.args)
            .arg("--print-config")
            .env_clear()
            .envs(settings.iter().cloned())
            .output()
            .unwrap();
        let config = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{pod}: {out:?}");
        let setting = |name: &str| {
            config
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} = ")))
                .unwrap_or_else(|| panic!("{pod}: no {name} in {config}"))
                .trim_matches('"')
                .to_string()
        };
        assert_eq!(setting("dir"), data.to_str().unwrap());
        assert_eq!(setting("port"), "6379");
        assert_eq!(setting("http-port"), "8080");
        assert_eq!(setting("bind"), "0.0.0.0");
        assert_eq!(setting("controller"), "true");
        // A joiner's cluster mode follows from its cluster-join.
        assert_eq!(setting("cluster-enabled"), join.is_none().to_string());
        assert_eq!(setting("cluster-announce-ip"), "10.1.2.3");
        assert_eq!(
            setting("cluster-announce-hostname"),
            format!("{pod}.shoal-headless.cache.svc.cluster.local")
        );
        assert_eq!(setting("cluster-join"), join.unwrap_or(""));
        assert_eq!(setting("maxmemory"), (640u64 << 20).to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// Real nodes.

/// A node's spec as the tests here start them ([`common::node_spec`]), on fresh ports.
fn spec(dir: &TestDir, name: &str, args: &[&str]) -> NodeSpec {
    common::node_spec(
        SHOAL,
        dir,
        name,
        NodePorts::reserve_without_http().unwrap(),
        args,
    )
}

/// A `shoal` command without the test's own `SHOAL_*` environment, with the test kit's
/// cluster secret.
fn shoal() -> Command {
    let mut command = Command::new(SHOAL);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SHOAL_") {
            command.env_remove(name);
        }
    }
    command.env(
        "SHOAL_CLUSTER_SECRET_FILE",
        shoal_testkit::cluster_secret_file(),
    );
    command
}

/// Runs `command` to its end, failing the test if it takes longer than `within`.
async fn run(command: Command, within: Duration, what: &str) -> Output {
    let what = what.to_string();
    tokio::task::spawn_blocking(move || {
        shoal_testkit::run_within(command, within, &what).unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap()
}

/// `CLUSTER MYID` of `node`.
async fn cluster_myid(node: &NodeProcess) -> String {
    let reply = node.command(&["CLUSTER", "MYID"]).await.unwrap();
    text(&reply).unwrap_or_else(|| panic!("CLUSTER MYID answered {reply:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_through_a_dns_name_and_myid_names_it() {
    shoal_testkit::run_alone("a_node_joins_through_a_dns_name_and_myid_names_it", TEST_LIMIT, async {
        let dir = TestDir::new("deploy_dns_join").unwrap();
        let founder = NodeProcess::start(spec(&dir, "founder", &["--replicas", "0"]), SETTLE)
            .await
            .unwrap();
        // The seed given as a name, as a pod gives pod 0's: resolved, then its bus asked.
        let seed = format!("localhost:{}", founder.ports().resp);
        let joiner = NodeProcess::start(
            spec(&dir, "joiner", &["--controller", "--cluster-join", &seed]),
            SETTLE,
        )
        .await
        .unwrap();
        let joiner_id = cluster_myid(&joiner).await;
        let started = Instant::now();
        loop {
            let nodes = common::cluster_nodes(&founder).await;
            let info = founder
                .command(&["CLUSTER", "INFO"])
                .await
                .ok()
                .and_then(|v| text(&v))
                .unwrap_or_default();
            if nodes.lines().count() == 2
                && nodes.lines().any(|l| l.starts_with(&joiner_id))
                && info.contains("cluster_state:ok")
            {
                break;
            }
            assert!(
                started.elapsed() < SETTLE,
                "the node that joined through {seed} is not in the cluster:\n{nodes}\n{info}\n{}",
                joiner.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // `shoal cluster myid` names each node as its CLUSTER MYID does, asked by name too.
        for (node, addr) in [
            (&joiner, format!("localhost:{}", joiner.ports().resp)),
            (&founder, founder.resp_addr()),
        ] {
            let mut command = shoal();
            command.args(["cluster", "myid", "--node", &addr]);
            let out = run(command, Duration::from_secs(10), "shoal cluster myid").await;
            assert!(out.status.success(), "{out:?}");
            let printed = String::from_utf8(out.stdout).unwrap();
            assert_eq!(printed.trim_end(), cluster_myid(node).await, "{addr}");
            assert_eq!(printed.trim_end().len(), 40, "Redis's 40-digit form: {printed}");
        }
    })
    .await;
}

/// Runs the preStop hook beside `node`, with its removal mark (if any) in `run_dir` and the
/// real `shoal` on its PATH.
async fn pre_stop(node: &NodeProcess, run_dir: &Path, within: Duration) -> Output {
    let bin = Path::new(SHOAL).parent().unwrap();
    let mut sh = Command::new("sh");
    sh.arg(manifests_dir().join("scripts/pre-stop.sh"))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("SHOAL_PORT", node.ports().resp.to_string())
        .env("RUN_DIR", run_dir)
        .env(
            "SHOAL_CLUSTER_SECRET_FILE",
            shoal_testkit::cluster_secret_file(),
        );
    run(sh, within, "pre-stop.sh").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pre_stop_hook_removes_only_a_marked_node_and_its_keys_move() {
    shoal_testkit::run_alone(
        "the_pre_stop_hook_removes_only_a_marked_node_and_its_keys_move",
        TEST_LIMIT,
        async {
            // Three shards of one node each, forwarding: any node takes any key.
            let options = ClusterOptions {
                http: false,
                routing: Some("forward".into()),
                ready_timeout: Duration::from_secs(60),
                ..ClusterOptions::default()
            };
            let cluster = TestCluster::start(SHOAL, 3, 0, options).await.unwrap();
            let leader = cluster.leader_index().await.unwrap();
            let victim = (leader + 1) % 3;
            let keeper = (leader + 2) % 3;
            let keys: Vec<String> = (0..600).map(|i| format!("pod:{i}")).collect();
            for key in &keys {
                let reply = cluster
                    .node(keeper)
                    .command(&["SET", key.as_str(), &format!("v-{key}")])
                    .await
                    .unwrap();
                assert_eq!(reply, Value::Simple(b"OK".to_vec()), "SET {key}");
            }
            let victim_id = cluster_myid(cluster.node(victim)).await;
            let run_dir = cluster.dir().join("run-victim");
            std::fs::create_dir_all(&run_dir).unwrap();

            // Not marked (a restart): nothing happens.
            let out = pre_stop(cluster.node(victim), &run_dir, Duration::from_secs(10)).await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{out:?}");
            assert!(stdout.contains("not marked for removal"), "{stdout}");
            assert!(cluster.node(victim).is_running());
            assert_eq!(cluster.status().await.unwrap().map.nodes.len(), 3);

            // Marked (a scale-in): the node is removed through itself, its shard drained first.
            std::fs::write(run_dir.join("remove-on-stop"), "").unwrap();
            let out = pre_stop(cluster.node(victim), &run_dir, Duration::from_secs(90)).await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!("pre-stop.sh, marked:\n{stdout}{stderr}");
            assert!(out.status.success(), "{stdout}\n{stderr}");
            assert!(
                stdout.contains(&format!("removing {victim_id} from the cluster")),
                "the hook names the node by its CLUSTER MYID: {stdout}"
            );
            assert!(stdout.contains("removed "), "{stdout}");
            let exit = cluster
                .node(victim)
                .wait_exit(Duration::from_secs(20))
                .await
                .expect("the removed node stops by itself");
            assert!(exit.success(), "{exit}");
            let status = cluster.status().await.unwrap();
            assert_eq!(status.map.nodes.len(), 2, "{:?}", status.map.nodes);
            assert_eq!(status.map.shards.len(), 2);

            // Every key is still there, on the two shards left.
            let mut held = 0;
            for i in [leader, keeper] {
                // `db0:keys=N,expires=...`: the node's own keys (DBSIZE counts the cluster's).
                let info = cluster.node(i).info("keyspace").await.unwrap();
                if let Some(db0) = info.get("db0") {
                    let n = db0.split(',').next().unwrap().trim_start_matches("keys=");
                    held += n.parse::<usize>().unwrap();
                }
            }
            assert_eq!(
                held,
                keys.len(),
                "the drained shard's keys moved with its slots"
            );
            for key in &keys {
                let reply = cluster
                    .node(keeper)
                    .command(&["GET", key.as_str()])
                    .await
                    .unwrap();
                assert_eq!(
                    reply,
                    Value::Bulk(format!("v-{key}").into_bytes()),
                    "GET {key}"
                );
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// A pod recreated elsewhere: the same node (its --dir) on a new IP address.

/// `shoal server` flags for a node of [`voters_back_on_new_addresses_keep_the_controller`]
/// on `ip`, with its directory `dir`, founding (`join: None`) or joining.
fn moved_node_args(ip: &str, ports: NodePorts, dir: &Path, join: Option<String>) -> Vec<String> {
    let mut args: Vec<String> = [
        "server",
        "--http-port",
        "0",
        "--threads",
        "1",
        "--node-timeout",
        "2000",
        "--controller",
        "--log-level",
        "info,openraft=warn",
        "--join-timeout",
        "20",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "--port".into(),
        ports.resp.to_string(),
        "--cluster-port".into(),
        ports.bus.to_string(),
        "--bind".into(),
        ip.into(),
        "--dir".into(),
        dir.display().to_string(),
    ]);
    match join {
        Some(seed) => args.extend(["--cluster-join".into(), seed]),
        None => args.extend(["--cluster-enabled".into(), "--replicas".into(), "0".into()]),
    }
    args
}

/// The controller's status, asked through the first of `buses` that answers.
async fn status_through(buses: &[String]) -> Result<shoal_cluster::bus::ClusterStatus, String> {
    use shoal_cluster::bus::{self, Reply, Request};
    let credentials: shoal_cluster::BusCredentials = shoal_testkit::cluster_secret().into();
    let mut errors = Vec::new();
    for addr in buses {
        match bus::call_leader(
            addr,
            &credentials,
            &Request::Status,
            Duration::from_secs(1),
            4,
        )
        .await
        {
            Ok(Reply::Status(status)) => return Ok(*status),
            Ok(other) => errors.push(format!("{addr}: {other:?}")),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// Kubernetes gives a recreated pod (a rolling update, an eviction) a new IP address: its node
/// comes back with its `--dir` on that address. Three voters, moved one after the other to
/// 127.0.0.10-12 (the leader last), must each be back in the map at their new address. Then
/// the Raft group must run on the new addresses alone: the leader is stopped, the two others
/// (which reach each other only at their new addresses) elect one of them, and it takes a
/// join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_back_on_new_addresses_keep_the_controller() {
    use shoal_testkit::{Process, ProcessSpec};
    shoal_testkit::run_alone(
        "voters_back_on_new_addresses_keep_the_controller",
        TEST_LIMIT,
        async {
            let dir = TestDir::new("deploy_new_addresses").unwrap();
            let ports: Vec<NodePorts> = (0..4)
                .map(|_| NodePorts::reserve_without_http().unwrap())
                .collect();
            let mut ips: Vec<String> = vec!["127.0.0.1".into(); 4];
            let spawn = |i: usize, args: Vec<String>| {
                Process::spawn(ProcessSpec {
                    name: format!("node-{i}"),
                    binary: SHOAL.into(),
                    args,
                    env: vec![(
                        "SHOAL_CLUSTER_SECRET_FILE".to_string(),
                        shoal_testkit::cluster_secret_file().display().to_string(),
                    )],
                    log: dir.join(&format!("node-{i}.log")),
                    nice: 0,
                })
                .unwrap()
            };
            let node_dir = |i: usize| dir.join(&format!("node-{i}.dir"));
            let buses = |ips: &[String]| -> Vec<String> {
                (0..3)
                    .map(|i| format!("{}:{}", ips[i], ports[i].bus))
                    .collect()
            };
            let wait =
                |what: String,
                 buses: Vec<String>,
                 done: Box<dyn Fn(&shoal_cluster::bus::ClusterStatus) -> bool>| async move {
                    let started = Instant::now();
                    loop {
                        let status = status_through(&buses).await;
                        if status.as_ref().is_ok_and(&done) {
                            return;
                        }
                        assert!(
                            started.elapsed() < Duration::from_secs(25),
                            "{what}: not after 25 s: {:?}",
                            status.map(|s| shoal_testkit::summarize(&s))
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                };

            let mut nodes = vec![spawn(
                0,
                moved_node_args(&ips[0], ports[0], &node_dir(0), None),
            )];
            let seed = format!("127.0.0.1:{}", ports[0].resp);
            for i in 1..3 {
                nodes.push(spawn(
                    i,
                    moved_node_args(&ips[i], ports[i], &node_dir(i), Some(seed.clone())),
                ));
            }
            wait(
                "three voters".into(),
                buses(&ips),
                Box::new(|s| {
                    s.map.nodes.len() == 3
                        && s.map.controllers.len() == 3
                        && s.map.nodes.values().all(|n| n.is_ok())
                        && s.map.migrations.is_empty()
                }),
            )
            .await;

            // The leader last.
            let leader = status_through(&buses(&ips)).await.unwrap().leader;
            let mut order = Vec::new();
            for (i, port) in ports.iter().enumerate().take(3) {
                let reply = shoal_testkit::resp::command_as(
                    &format!("127.0.0.1:{}", port.resp),
                    None,
                    &["CLUSTER", "MYID"],
                    Duration::from_secs(2),
                )
                .await
                .unwrap();
                let id: shoal_cluster::NodeId = text(&reply).unwrap().parse().unwrap();
                if id == leader {
                    order.push(i);
                } else {
                    order.insert(0, i);
                }
            }
            for i in order {
                let ip = format!("127.0.0.{}", 10 + i);
                nodes[i].terminate(Duration::from_secs(10)).await.unwrap();
                let other = (i + 1) % 3;
                let seed = format!("{}:{}", ips[other], ports[other].resp);
                nodes[i]
                    .restart_with(moved_node_args(&ip, ports[i], &node_dir(i), Some(seed)))
                    .unwrap();
                ips[i] = ip.clone();
                wait(
                    format!("node {i} back at {ip}"),
                    buses(&ips),
                    Box::new(move |s| {
                        s.map.nodes.len() == 3
                            && s.map.nodes.values().all(|n| n.is_ok())
                            && s.map.nodes.values().any(|n| n.host == ip)
                    }),
                )
                .await;
            }
            let leader = status_through(&buses(&ips)).await.unwrap().leader;
            let mut stopped = None;
            for (i, node) in nodes.iter_mut().enumerate() {
                let reply = shoal_testkit::resp::command_as(
                    &format!("{}:{}", ips[i], ports[i].resp),
                    None,
                    &["CLUSTER", "MYID"],
                    Duration::from_secs(2),
                )
                .await
                .unwrap();
                if text(&reply)
                    .unwrap()
                    .parse::<shoal_cluster::NodeId>()
                    .unwrap()
                    == leader
                {
                    node.terminate(Duration::from_secs(10)).await.unwrap();
                    stopped = Some(i);
                }
            }
            let stopped = stopped.expect("the leader is one of the three");
            let survivor = (stopped + 1) % 3;
            let seed = format!("{}:{}", ips[survivor], ports[survivor].resp);
            let _fourth = spawn(
                3,
                moved_node_args("127.0.0.1", ports[3], &node_dir(3), Some(seed)),
            );
            wait(
                "a fourth node joins through a leader the survivors elected".into(),
                buses(&ips),
                Box::new(move |s| {
                    s.leader != leader
                        && s.map.nodes.len() == 4
                        && s.map.nodes.values().filter(|n| n.is_ok()).count() == 3
                }),
            )
            .await;
        },
    )
    .await;
}
