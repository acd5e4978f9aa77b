//! The commands the proxy answers by asking several nodes: commands over the whole keyspace
//! that ask every primary ([`fanout`]), and `INFO` ([`info`]).

pub(crate) mod fanout;
pub(crate) mod info;
