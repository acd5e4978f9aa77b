//! The proxy's own ACL users: loaded from its `aclfile`, checked before a command is forwarded
//! (a denied command never reaches the cluster), and kept apart from the nodes' users.

use std::time::{Duration, Instant};

use shoal_client::Value;

use crate::common::{Raw, SLOTS, WAIT, bulk, error_text, shared, simple, start_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_denies_by_its_own_users_before_forwarding() {
    let harness = shared();
    let dir = std::env::temp_dir().join(format!("shoal-proxy-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let aclfile = dir.join("users.acl");
    std::fs::write(
        &aclfile,
        "user default on >pw ~* &* +@all\nuser reader on >rpw ~acl:pub:* -@all +get\n",
    )
    .unwrap();
    let proxy = start_proxy(&harness.seed(), |c| c.aclfile = Some(aclfile.clone()));
    // As the shared proxy before it: serve once the map places every slot on the shards.
    let deadline = Instant::now() + WAIT;
    while proxy.client().map().slots_assigned() < SLOTS
        || proxy.client().map().shards.len() < 3
        || !proxy.client().map().migrations.is_empty()
    {
        assert!(Instant::now() < deadline, "the proxy never learned the map");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut admin = Raw::connect(proxy.resp_addr()).await;
    assert_eq!(
        error_text(&admin.call(&["GET", "acl:pub:1"]).await),
        "NOAUTH Authentication required."
    );
    assert_eq!(admin.call(&["AUTH", "pw"]).await, simple("OK"));
    let mut reader = Raw::connect(proxy.resp_addr()).await;
    assert_eq!(reader.call(&["AUTH", "reader", "rpw"]).await, simple("OK"));
    assert_eq!(
        error_text(&reader.call(&["SET", "acl:pub:1", "forged"]).await),
        "NOPERM this user has no permissions to run the 'set' command"
    );
    assert_eq!(
        error_text(&reader.call(&["GET", "acl:secret"]).await),
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    assert_eq!(admin.call(&["SET", "acl:pub:1", "v"]).await, simple("OK"));
    assert_eq!(reader.call(&["GET", "acl:pub:1"]).await, bulk("v"));
    // The denied SET never reached the cluster: the value is the admin's.
    let mut seed = Raw::connect(harness.seed().as_str()).await;
    let Value::Int(slot) = seed.call(&["CLUSTER", "KEYSLOT", "acl:pub:1"]).await else {
        panic!("CLUSTER KEYSLOT answers an integer")
    };
    let mut direct = Raw::connect(harness.owner(slot as u16).as_str()).await;
    assert_eq!(direct.call(&["GET", "acl:pub:1"]).await, bulk("v"));
    // The proxy's users are its own: the nodes do not know them.
    assert_eq!(
        error_text(&direct.call(&["AUTH", "reader", "rpw"]).await),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(admin.call(&["ACL", "WHOAMI"]).await, bulk("default"));
    assert_eq!(
        admin.call(&["ACL", "USERS"]).await,
        Value::Array(vec![bulk("default"), bulk("reader")])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
