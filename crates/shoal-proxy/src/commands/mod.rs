//! What the proxy answers itself by asking several nodes: `INFO` ([`info`]). Commands over
//! the whole keyspace (`DBSIZE`, `KEYS`, `SCAN`, ...) are the smart client's
//! ([`shoal_client::ClusterWide`]), shared with forwarding nodes.

pub(crate) mod info;
