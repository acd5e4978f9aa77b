//! A cluster of real `shoal server` processes on 127.0.0.1, started and observed through the
//! controller leader's status (`Request::Status` on the cluster bus).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shoal_cluster::ShardId;
use shoal_cluster::bus::{self, ClusterStatus, Reply, Request};
use shoal_cluster::decide::{Settings, desired_voters};
use shoal_cluster::{ClusterMap, Health, NodeId, SLOTS, key_slot};

use crate::error::{Error, Result};
use crate::node::{NodeProcess, NodeSpec};
use crate::ports::NodePorts;
use crate::resp::Value;
use crate::testdir::TestDir;

/// How often cluster waits ask for the status again.
const STATUS_POLL: Duration = Duration::from_millis(50);

/// How long one status exchange may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the controller may take to decide a removal.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(12);

/// How a [`TestCluster`]'s nodes run.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// `--threads` of every node.
    pub threads: usize,
    /// `--node-timeout` (ms) of every node [default: 2000, twice the server's: debug builds on
    /// a busy 2-core machine must not look dead].
    pub node_timeout_ms: u64,
    /// `--routing` of every node, if set.
    pub routing: Option<String>,
    /// `--log-level` of every node [default: `info,openraft=warn`: Raft's own info lines
    /// would drown the node's].
    pub log_level: String,
    /// Whether nodes serve HTTP (on a reserved port).
    pub http: bool,
    /// How many of the first nodes may be controller voters (`--controller`) [default: every
    /// node, as `shoal cluster up` starts them: the controller places its voters itself].
    /// Fewer keep the voters on the first nodes, for tests that want them there.
    pub controllers: usize,
    /// Further flags for every node.
    pub extra_args: Vec<String>,
    /// `--replicas` of the founder when it differs from [`TestCluster::start`]'s `replicas`:
    /// a cluster started short of replicas, to add them later with [`TestCluster::add_node`]
    /// [default: none, the same].
    pub founder_replicas: Option<u8>,
    /// Bound of [`TestCluster::start`] and [`TestCluster::add_node`].
    pub ready_timeout: Duration,
    /// The password every node requires (`--requirepass`), if any; the kit's own exchanges
    /// with the nodes give it.
    pub requirepass: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            threads: 1,
            node_timeout_ms: 2000,
            routing: None,
            log_level: "info,openraft=warn".into(),
            http: true,
            controllers: usize::MAX,
            extra_args: Vec::new(),
            founder_replicas: None,
            ready_timeout: Duration::from_secs(30),
            requirepass: None,
        }
    }
}

/// How [`TestCluster::add_node_with`] starts one more node, beyond the [`ClusterOptions`]
/// every node gets.
#[derive(Clone, Debug, Default)]
pub struct JoinOptions {
    /// Whether it may be a controller member (`--controller`).
    pub controller: bool,
    /// Further environment variables for it (`SHOAL_BUS_CONNECT_VIA`, to route its bus
    /// connections through relays).
    pub env: Vec<(String, String)>,
    /// Further flags for it.
    pub extra_args: Vec<String>,
    /// Its niceness (see [`ProcessSpec::nice`](crate::ProcessSpec::nice)).
    pub nice: i32,
}

/// One shard of a map, by the indices of this cluster's processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardNodes {
    /// The shard.
    pub shard: ShardId,
    /// Its primary's index.
    pub primary: usize,
    /// Its replicas' indices, in the map's order (failed ones included).
    pub replicas: Vec<usize>,
}

impl ShardNodes {
    /// Whether node `index` belongs to it.
    pub fn contains(&self, index: usize) -> bool {
        self.primary == index || self.replicas.contains(&index)
    }
}

/// A running cluster. Nodes keep their index for the cluster's life, killed or not; dropping
/// the cluster kills every node, and keeps the log directory if the test failed. Every node
/// keeps its directory (`--dir`) in the test's directory (`node-<i>.dir`), so
/// [`NodeProcess::restart`] brings it back as itself and
/// [`NodeProcess::restart_without_dir`] as a new node.
pub struct TestCluster {
    // Declared before `dir`: the processes die before their logs' directory goes.
    nodes: Vec<NodeProcess>,
    binary: PathBuf,
    options: ClusterOptions,
    replicas: u8,
    dir: TestDir,
}

impl TestCluster {
    /// Starts `shards * (1 + replicas)` nodes: the first founds the cluster, the others join
    /// through it, and the first `options.controllers` may be controller voters. Returns once
    /// the controller's status shows every node healthy, every shard, every slot owned, the
    /// controller's voters settled, and every node reporting the final epoch, and every
    /// shard's primary serves (it has its first lease: until then it answers `CLUSTERDOWN`).
    pub async fn start(
        binary: impl AsRef<Path>,
        shards: usize,
        replicas: u8,
        options: ClusterOptions,
    ) -> Result<TestCluster> {
        if shards == 0 {
            return Err(Error::Usage("a cluster needs at least one shard".into()));
        }
        let name = std::thread::current().name().map_or_else(
            || "cluster".to_string(),
            |n| n.rsplit("::").next().unwrap_or(n).into(),
        );
        let mut cluster = TestCluster {
            nodes: Vec::new(),
            binary: binary.as_ref().to_path_buf(),
            options,
            replicas,
            dir: TestDir::new(&name)?,
        };
        let count = shards * (1 + replicas as usize);
        let ready_timeout = cluster.options.ready_timeout;
        let started = Instant::now();
        cluster.spawn_node(None, cluster.options.controllers > 0)?;
        cluster.nodes[0].wait_ready(ready_timeout).await?;
        cluster.nodes[0].id().await?;
        cluster
            .wait_until("the founder to lead its cluster", ready_timeout, |_| true)
            .await?;
        let founder = cluster.nodes[0].resp_addr();
        for i in 1..count {
            let controller = i < cluster.options.controllers;
            cluster.spawn_node(Some(&founder), controller)?;
        }
        for node in &cluster.nodes[1..] {
            let left = ready_timeout.saturating_sub(started.elapsed());
            node.wait_ready(left).await?;
            node.id().await?;
        }
        let alive = cluster.alive_ids();
        let left = ready_timeout.saturating_sub(started.elapsed());
        cluster
            .wait_until(
                &format!("{count} nodes in {shards} shards, settled"),
                left,
                |status| {
                    status.map.nodes.len() == count
                        && status.map.shards.len() == shards
                        && is_settled(status, &alive)
                },
            )
            .await?;
        cluster
            .wait_for_primaries(ready_timeout.saturating_sub(started.elapsed()))
            .await?;
        Ok(cluster)
    }

    /// Starts one more node that joins through a running node (a replica while a shard lacks
    /// one, else the primary of a new shard). Returns its index once the controller's status
    /// shows it and the cluster has settled (see [`is_settled`]).
    pub async fn add_node(&mut self, controller: bool) -> Result<usize> {
        self.add_node_with(JoinOptions {
            controller,
            ..JoinOptions::default()
        })
        .await
    }

    /// [`TestCluster::add_node`] with more to say about the node: its own environment and
    /// flags.
    pub async fn add_node_with(&mut self, join: JoinOptions) -> Result<usize> {
        self.join_node(join, true).await
    }

    /// Starts one more node that joins through a running node, and returns its index once the
    /// map has it: at once (`settle` false: its slots may still be on their way to it), or
    /// once the cluster has settled too, as [`TestCluster::add_node_with`].
    pub async fn join_node(&mut self, join: JoinOptions, settle: bool) -> Result<usize> {
        let seed = self
            .reachable()
            .next()
            .map(|(_, n)| n.resp_addr())
            .ok_or_else(|| Error::Usage("no running node to join through".into()))?;
        let index = self.spawn(Some(&seed), &join)?;
        let timeout = self.options.ready_timeout;
        let started = Instant::now();
        let node = &self.nodes[index];
        node.wait_ready(timeout).await?;
        let id = node.id().await?;
        let alive = self.alive_ids();
        self.wait_until(
            &format!("{} ({id:?}) to join and the cluster to settle", node.name()),
            timeout.saturating_sub(started.elapsed()),
            |status| status.map.nodes.contains_key(&id) && (!settle || is_settled(status, &alive)),
        )
        .await?;
        Ok(index)
    }

    /// Node `i` (in start order).
    ///
    /// # Panics
    /// If there is no node `i`.
    pub fn node(&self, i: usize) -> &NodeProcess {
        &self.nodes[i]
    }

    /// Every node, in start order, killed ones included.
    pub fn nodes(&self) -> &[NodeProcess] {
        &self.nodes
    }

    /// Running, unpaused nodes with their indices.
    pub fn reachable(&self) -> impl Iterator<Item = (usize, &NodeProcess)> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_running() && !n.is_paused())
    }

    /// RESP addresses of the reachable nodes: seeds for a cluster client.
    pub fn resp_addrs(&self) -> Vec<String> {
        self.reachable().map(|(_, n)| n.resp_addr()).collect()
    }

    /// The index of the node with id `id` (as learned at its start).
    pub fn index_of(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.known_id() == Some(id))
    }

    /// The cluster secret its nodes share (the kit's, [`crate::cluster_secret`]).
    pub fn secret(&self) -> shoal_cluster::BusSecret {
        crate::secret::cluster_secret()
    }

    /// The directory holding the nodes' logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster as the controller's leader sees it, asked through each reachable node in
    /// turn until one answers.
    pub async fn status(&self) -> Result<ClusterStatus> {
        let mut errors = Vec::new();
        for (_, node) in self.reachable() {
            match bus::call_leader(
                &node.bus_addr(),
                &self.secret().into(),
                &Request::Status,
                STATUS_TIMEOUT,
                4,
            )
            .await
            {
                Ok(Reply::Status(status)) => return Ok(*status),
                Ok(other) => errors.push(format!("{}: answered {other:?}", node.name())),
                Err(e) => errors.push(format!("{}: {e}", node.name())),
            }
        }
        if errors.is_empty() {
            errors.push("no reachable node".into());
        }
        Err(Error::Cluster(format!(
            "no controller status: {}",
            errors.join("; ")
        )))
    }

    /// Polls the status until `done` holds for it, for at most `timeout`. The error names
    /// `what` and shows the last status (or the last error).
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&ClusterStatus) -> bool,
    ) -> Result<ClusterStatus> {
        let started = Instant::now();
        let mut last;
        loop {
            match self.status().await {
                Ok(status) if done(&status) => return Ok(status),
                Ok(status) => last = summarize(&status),
                Err(e) => last = e.to_string(),
            }
            if started.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: what.to_string(),
                    waited: timeout,
                    detail: format!("last status: {last}\nlogs in {}", self.dir().display()),
                });
            }
            tokio::time::sleep(STATUS_POLL).await;
        }
    }

    /// The index of the node that hosts the controller's leader.
    pub async fn leader_index(&self) -> Result<usize> {
        let status = self.status().await?;
        self.index_of(status.leader).ok_or_else(|| {
            Error::Cluster(format!(
                "the leader {:?} is none of this cluster's processes",
                status.leader
            ))
        })
    }

    /// Waits up to `timeout` until the primary of every shard of the current map serves its
    /// keys: a `GET` of one of them answers without an error (a primary serves only with a
    /// lease from the controller, which it may not have yet right after the cluster settled:
    /// until then it answers `-CLUSTERDOWN`). Returns that map.
    pub async fn wait_for_primaries(&self, timeout: Duration) -> Result<ClusterMap> {
        let started = Instant::now();
        let map = self.status().await?.map;
        for shard in &map.shards {
            let Some(primary) = map.node(shard.primary) else {
                continue;
            };
            if map.slots.count(shard.id) == 0 {
                continue; // A shard without slots serves no key.
            }
            let key = (0u64..)
                .map(|n| format!("probe:{n}"))
                .find(|k| map.slots.get(key_slot(k.as_bytes())) == Some(shard.id))
                .expect("a shard with slots owns some key");
            let addr = primary.resp_addr();
            let mut last;
            loop {
                let password = self.options.requirepass.as_deref();
                let get = ["GET", key.as_str()];
                match crate::resp::command_as(&addr, password, &get, STATUS_TIMEOUT).await {
                    Ok(Value::Error(e)) => last = String::from_utf8_lossy(&e).into_owned(),
                    Ok(_) => break,
                    Err(e) => last = e.to_string(),
                }
                if started.elapsed() >= timeout {
                    return Err(Error::Timeout {
                        what: format!("the primary {addr} of shard {} to serve", shard.id),
                        waited: timeout,
                        detail: format!("last: {last}\nlogs in {}", self.dir().display()),
                    });
                }
                tokio::time::sleep(STATUS_POLL).await;
            }
        }
        Ok(map)
    }

    /// `map`'s shards by process index. Fails if a shard's primary is none of this cluster's
    /// processes; replicas that are none of them are left out.
    pub fn shard_nodes(&self, map: &ClusterMap) -> Result<Vec<ShardNodes>> {
        map.shards
            .iter()
            .map(|shard| {
                let primary = self.index_of(shard.primary).ok_or_else(|| {
                    Error::Cluster(format!(
                        "the primary {:?} of shard {} is none of this cluster's processes",
                        shard.primary, shard.id
                    ))
                })?;
                let replicas = shard
                    .replicas
                    .iter()
                    .filter_map(|id| self.index_of(*id))
                    .collect();
                Ok(ShardNodes {
                    shard: shard.id,
                    primary,
                    replicas,
                })
            })
            .collect()
    }

    /// A cluster of one shard, a primary and `replicas` replicas, without HTTP (`options`
    /// otherwise), and that shard: where the tests of replication between processes start.
    ///
    /// # Panics
    /// If the cluster does not start or the shard lacks a replica it was started with.
    pub async fn start_shard(
        binary: impl AsRef<Path>,
        replicas: u8,
        options: ClusterOptions,
    ) -> (TestCluster, ShardNodes) {
        let options = ClusterOptions {
            http: false,
            ..options
        };
        let cluster = TestCluster::start(binary, 1, replicas, options)
            .await
            .expect("the cluster starts");
        let shard = cluster.shards().await.expect("the shards").remove(0);
        assert_eq!(shard.replicas.len(), usize::from(replicas), "{shard:?}");
        (cluster, shard)
    }

    /// The shards as the controller's leader sees them now, by process index.
    pub async fn shards(&self) -> Result<Vec<ShardNodes>> {
        self.shard_nodes(&self.status().await?.map)
    }

    /// The shard node `index` belongs to in `map`, by process index.
    pub fn shard_of_node(&self, map: &ClusterMap, index: usize) -> Result<ShardNodes> {
        self.shard_nodes(map)?
            .into_iter()
            .find(|s| s.contains(index))
            .ok_or_else(|| {
                Error::Cluster(format!(
                    "{} is in no shard of the map",
                    self.nodes[index].name()
                ))
            })
    }

    /// Asks the controller to retire node `id`; returns the map without it.
    pub async fn remove_node(&self, id: NodeId) -> Result<ClusterMap> {
        let mut errors = Vec::new();
        for (_, node) in self.reachable() {
            let request = Request::RemoveNode(id);
            match bus::call_leader(
                &node.bus_addr(),
                &self.secret().into(),
                &request,
                REMOVE_TIMEOUT,
                4,
            )
            .await
            {
                Ok(Reply::Removed(map)) => return Ok(map),
                Ok(Reply::Error(e)) => return Err(Error::Cluster(e)),
                Ok(other) => errors.push(format!("{}: answered {other:?}", node.name())),
                Err(e) => errors.push(format!("{}: {e}", node.name())),
            }
        }
        Err(Error::Cluster(format!(
            "could not remove {id:?}: {}",
            errors.join("; ")
        )))
    }

    /// Ids of the running, unpaused nodes whose ids are known.
    fn alive_ids(&self) -> Vec<NodeId> {
        self.reachable().filter_map(|(_, n)| n.known_id()).collect()
    }

    /// Spawns the next node (founding a cluster when `join` is `None`); returns its index.
    fn spawn_node(&mut self, join: Option<&str>, controller: bool) -> Result<usize> {
        let options = JoinOptions {
            controller,
            ..JoinOptions::default()
        };
        self.spawn(join, &options)
    }

    /// Spawns the next node as `node` says; returns its index.
    fn spawn(&mut self, join: Option<&str>, node: &JoinOptions) -> Result<usize> {
        let index = self.nodes.len();
        let name = format!("node-{index}");
        let ports = if self.options.http {
            NodePorts::reserve()?
        } else {
            NodePorts::reserve_without_http()?
        };
        let founder_replicas = self.options.founder_replicas.unwrap_or(self.replicas);
        let mut args = node_args(&self.options, founder_replicas, join, node.controller);
        args.extend(node.extra_args.iter().cloned());
        let env = node.env.clone();
        let dir = self.dir.join(&format!("{name}.dir"));
        let spec = NodeSpec {
            log: self.dir.join(&format!("{name}.log")),
            name,
            binary: self.binary.clone(),
            ports,
            args,
            env,
            nice: node.nice,
            password: self.options.requirepass.clone(),
            dir: Some(dir),
        };
        self.nodes.push(NodeProcess::spawn(spec)?);
        Ok(index)
    }
}

/// The cluster flags of one node.
fn node_args(
    options: &ClusterOptions,
    replicas: u8,
    join: Option<&str>,
    controller: bool,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--cluster-enabled",
        "--threads",
        &options.threads.to_string(),
        "--node-timeout",
        &options.node_timeout_ms.to_string(),
        "--log-level",
        &options.log_level,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(routing) = &options.routing {
        args.extend(["--routing".into(), routing.clone()]);
    }
    if controller {
        args.push("--controller".into());
    }
    match join {
        Some(seed) => args.extend(["--cluster-join".into(), seed.to_string()]),
        None => args.extend(["--replicas".into(), replicas.to_string()]),
    }
    args.extend(options.extra_args.iter().cloned());
    args
}

/// Whether the cluster has come to rest around the nodes `alive`: each is in the map, healthy,
/// heard from, and reports holding the map's epoch; every slot is owned; and the controller
/// has no voter change left to make.
pub fn is_settled(status: &ClusterStatus, alive: &[NodeId]) -> bool {
    let map = &status.map;
    let holds_the_map = |id: &NodeId| {
        map.node(*id).is_some_and(|n| n.health == Health::Ok)
            && status
                .nodes
                .iter()
                .any(|n| n.id == *id && n.last_heartbeat_ms.is_some() && n.epoch == map.epoch)
    };
    alive.iter().all(holds_the_map)
        && map.slots_assigned() == SLOTS
        && map.migrations.is_empty()
        && map.draining.is_empty()
        && desired_voters(
            map,
            &map.controllers,
            Some(status.leader),
            Settings::default().max_voters,
        )
        .is_none()
}

/// A few lines on a status: epoch, leader, slots, shards and nodes.
pub fn summarize(status: &ClusterStatus) -> String {
    let map = &status.map;
    let mut out = format!(
        "epoch {}, leader {:?}, {}/{} slots assigned, voters {:?}\n",
        map.epoch,
        status.leader,
        map.slots_assigned(),
        SLOTS,
        map.controllers
    );
    for shard in &map.shards {
        out.push_str(&format!(
            "  shard {}: primary {:?}, replicas {:?}, {} slots\n",
            shard.id,
            shard.primary,
            shard.replicas,
            map.slots.count(shard.id)
        ));
    }
    for node in map.nodes.values() {
        let seen = status.nodes.iter().find(|n| n.id == node.id);
        out.push_str(&format!(
            "  node {:?} {} {:?}{}: heartbeat {}, epoch {}, keys {}\n",
            node.id,
            node.resp_addr(),
            node.health,
            if map.controllers.contains(&node.id) {
                " voter"
            } else {
                ""
            },
            seen.and_then(|s| s.last_heartbeat_ms)
                .map_or("never".to_string(), |ms| format!("{ms} ms ago")),
            seen.map_or(0, |s| s.epoch),
            seen.map_or(0, |s| s.stats.keys),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_cluster::bus::{NodeStats, NodeStatus};
    use shoal_cluster::{NodeInfo, ShardId, ShardInfo, SlotTable};

    fn status(epoch: u64, reported: &[(u64, u64)]) -> ClusterStatus {
        let mut map = ClusterMap::empty();
        map.epoch = epoch;
        for (i, id) in [1u64, 2, 3].into_iter().enumerate() {
            map.nodes.insert(
                NodeId(id),
                NodeInfo {
                    controller: true,
                    ..NodeInfo::local(NodeId(id), 7000 + i as u16)
                },
            );
            map.shards.push(ShardInfo {
                id: ShardId(i as u32),
                primary: NodeId(id),
                replicas: vec![],
            });
        }
        map.next_shard = 3;
        map.slots = SlotTable::all(ShardId(0));
        map.controllers = vec![NodeId(1), NodeId(2), NodeId(3)];
        ClusterStatus {
            leader: NodeId(1),
            nodes: reported
                .iter()
                .map(|&(id, epoch)| NodeStatus {
                    id: NodeId(id),
                    placement: None,
                    last_heartbeat_ms: Some(10),
                    epoch,
                    stats: NodeStats::default(),
                })
                .collect(),
            hot_keys: Default::default(),
            map,
        }
    }

    const ALL: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

    #[test]
    fn settled_needs_every_alive_node_on_the_final_epoch() {
        assert!(is_settled(&status(5, &[(1, 5), (2, 5), (3, 5)]), &ALL));
        assert!(!is_settled(&status(5, &[(1, 5), (2, 4), (3, 5)]), &ALL));
        assert!(
            !is_settled(&status(5, &[(1, 5), (2, 5)]), &ALL),
            "3 never heard"
        );
        // A dead node's stale report does not matter once it is not expected alive.
        assert!(is_settled(&status(5, &[(1, 5), (2, 5), (3, 2)]), &ALL[..2]));
    }

    #[test]
    fn settled_needs_health_every_slot_and_stable_voters() {
        let mut failed = status(5, &[(1, 5), (2, 5), (3, 5)]);
        failed.map.nodes.get_mut(&NodeId(2)).unwrap().health = Health::Failed;
        assert!(!is_settled(&failed, &ALL));

        let mut hole = status(5, &[(1, 5), (2, 5), (3, 5)]);
        hole.map.slots.set(77, None);
        assert!(!is_settled(&hole, &ALL));

        let mut voters = status(5, &[(1, 5), (2, 5), (3, 5)]);
        voters.map.controllers = vec![NodeId(1)];
        assert!(!is_settled(&voters, &ALL), "two more voters are due");
    }

    #[test]
    fn summaries_name_every_node() {
        let text = summarize(&status(5, &[(1, 5), (2, 4)]));
        assert!(
            text.starts_with("epoch 5, leader 0000000000000001"),
            "{text}"
        );
        assert!(text.contains("node 0000000000000003 127.0.0.1:7002 Ok voter: heartbeat never"));
        assert!(text.contains("epoch 4"), "{text}");
    }

    #[test]
    fn nodes_get_the_cluster_flags() {
        let options = ClusterOptions {
            routing: Some("redirect".into()),
            extra_args: vec!["--maxmemory".into(), "10mb".into()],
            ..ClusterOptions::default()
        };
        let founder = node_args(&options, 1, None, true).join(" ");
        assert_eq!(
            founder,
            "--cluster-enabled --threads 1 --node-timeout 2000 --log-level info,openraft=warn \
             --routing redirect --controller --replicas 1 --maxmemory 10mb"
        );
        let joiner = node_args(&options, 1, Some("127.0.0.1:1"), false).join(" ");
        assert!(joiner.contains("--cluster-join 127.0.0.1:1") && !joiner.contains("--controller"));
    }

    #[tokio::test]
    async fn a_cluster_needs_a_shard() {
        let err = TestCluster::start("/nonexistent", 0, 0, ClusterOptions::default())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::Usage(_)), "{err}");
    }
}
