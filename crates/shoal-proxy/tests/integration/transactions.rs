//! Transactions through the proxy: `MULTI` ... `EXEC` runs whole on the slot's primary,
//! refusals while queuing abort it (`-EXECABORT`), keys of several slots are refused
//! (`-CROSSSLOT`), and `WATCH` holds until `EXEC`.

use redis::AsyncCommands as _;
use shoal_client::Value;

use crate::common::*;

fn ok() -> Value {
    simple("OK")
}

fn queued() -> Value {
    simple("QUEUED")
}

/// The slot of `key`.
fn slot(key: &str) -> u16 {
    shoal_client::command_slot(&["GET", key])
        .unwrap()
        .expect("a key has a slot")
}

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_exec_runs_the_transaction_on_its_slot_s_primary() {
    let harness = shared();
    for resp3 in [false, true] {
        let tag = if resp3 { "{txp3}" } else { "{txp2}" };
        let (a, counter) = (format!("{tag}a"), format!("{tag}n"));
        // The redis crate's atomic pipeline: MULTI, the commands, EXEC, and EXEC's array.
        let mut con = connect(harness.addr(), resp3).await;
        let (set, incr, got): (String, i64, String) = redis::pipe()
            .atomic()
            .set(&a, "1")
            .incr(&a, 5)
            .get(&a)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!((set.as_str(), incr, got.as_str()), ("OK", 6, "6"));
        let owner = harness.owner(slot(&a));
        let direct_value: String = redis::cmd("GET")
            .arg(&a)
            .query(&mut direct(&owner))
            .unwrap();
        assert_eq!(direct_value, "6");

        // Byte for byte, pipelined with a command after EXEC, which sees its effects.
        let mut raw = Raw::connect(harness.addr()).await;
        if resp3 {
            assert!(matches!(raw.call(&["HELLO", "3"]).await, Value::Map(_)));
        }
        let mut frames = Vec::new();
        for args in [
            vec!["MULTI"],
            vec!["SET", counter.as_str(), "10"],
            vec!["INCR", counter.as_str()],
            vec!["GET", counter.as_str()],
            vec!["EXEC"],
            vec!["INCR", counter.as_str()],
        ] {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            frames.extend_from_slice(&frame(&args));
        }
        raw.send(&frames).await;
        assert_eq!(raw.reply().await, ok());
        for _ in 0..3 {
            assert_eq!(raw.reply().await, queued());
        }
        assert_eq!(
            raw.reply().await,
            Value::Array(vec![ok(), Value::Int(11), bulk("11")])
        );
        assert_eq!(raw.reply().await, Value::Int(12));

        // A command's own error is its reply in the array; PING and ECHO join in.
        assert_eq!(raw.call(&["MULTI"]).await, ok());
        assert_eq!(raw.call(&["SET", &a, "text"]).await, queued());
        assert_eq!(raw.call(&["INCR", &a]).await, queued());
        assert_eq!(raw.call(&["PING"]).await, queued());
        assert_eq!(raw.call(&["ECHO", "hi"]).await, queued());
        let Value::Array(items) = raw.call(&["EXEC"]).await else {
            panic!("EXEC answers an array");
        };
        assert_eq!(items[0], ok());
        assert!(error_text(&items[1]).starts_with("ERR value is not an integer"));
        assert_eq!(items[2..], [simple("PONG"), bulk("hi")]);

        // DISCARD drops it.
        assert_eq!(raw.call(&["MULTI"]).await, ok());
        assert_eq!(raw.call(&["SET", &a, "discarded"]).await, queued());
        assert_eq!(raw.call(&["DISCARD"]).await, ok());
        assert_eq!(raw.call(&["GET", &a]).await, bulk("text"));
        assert_eq!(
            error_text(&raw.call(&["EXEC"]).await),
            "ERR EXEC without MULTI"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_refused_while_queuing_aborts_the_transaction() {
    let harness = shared();
    let mut raw = Raw::connect(harness.addr()).await;
    // Refused by the front door (arity), as on a node.
    assert_eq!(raw.call(&["MULTI"]).await, ok());
    assert_eq!(raw.call(&["SET", "{abort}k", "1"]).await, queued());
    let arity = raw.call(&["GET"]).await;
    assert_eq!(
        error_text(&arity),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(error_text(&raw.call(&["EXEC"]).await), EXECABORT);
    assert_eq!(raw.call(&["GET", "{abort}k"]).await, Value::Null);

    // Refused by the proxy: what covers every node, and what acts on the connection.
    for (args, words) in [
        (vec!["DBSIZE"], "DBSIZE cannot be queued in a transaction"),
        (
            vec!["FLUSHALL"],
            "FLUSHALL cannot be queued in a transaction",
        ),
        (
            vec!["CLIENT", "ID"],
            "CLIENT ID cannot be queued in a transaction",
        ),
        (
            vec!["CLUSTER", "INFO"],
            "ERR This instance has cluster support disabled",
        ),
    ] {
        assert_eq!(raw.call(&["MULTI"]).await, ok());
        assert_eq!(raw.call(&["SET", "{abort}k", "1"]).await, queued());
        let refused = error_text(&raw.call(&args).await);
        assert!(refused.contains(words), "{args:?}: {refused}");
        assert_eq!(
            error_text(&raw.call(&["EXEC"]).await),
            EXECABORT,
            "{args:?}"
        );
    }
    assert_eq!(raw.call(&["GET", "{abort}k"]).await, Value::Null);

    // The redis crate reports the abort (and why) as an error.
    let mut con = connect(harness.addr(), false).await;
    let aborted: redis::RedisResult<(String, String)> = redis::pipe()
        .atomic()
        .set("{abort}k", "1")
        .cmd("GET")
        .query_async(&mut con)
        .await;
    let err = aborted.unwrap_err();
    assert!(err.to_string().contains("aborted"), "{err}");
    assert!(
        err.to_string().contains("wrong number of arguments"),
        "{err}"
    );
    let value: Option<String> = con.get("{abort}k").await.unwrap();
    assert_eq!(value, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_several_slots_are_refused() {
    let harness = shared();
    assert_ne!(slot("cross:a"), slot("cross:b"));
    let mut raw = Raw::connect(harness.addr()).await;
    // One command's keys: refused while queuing.
    assert_eq!(raw.call(&["MULTI"]).await, ok());
    assert_eq!(
        error_text(&raw.call(&["MGET", "cross:a", "cross:b"]).await),
        CROSSSLOT
    );
    assert_eq!(error_text(&raw.call(&["EXEC"]).await), EXECABORT);
    // The whole transaction's keys: refused at EXEC, and nothing runs.
    assert_eq!(raw.call(&["MULTI"]).await, ok());
    assert_eq!(raw.call(&["SET", "cross:a", "1"]).await, queued());
    assert_eq!(raw.call(&["SET", "cross:b", "1"]).await, queued());
    assert_eq!(error_text(&raw.call(&["EXEC"]).await), CROSSSLOT);
    assert_eq!(
        raw.call(&["MGET", "cross:a", "cross:b"]).await,
        Value::Array(vec![Value::Null, Value::Null])
    );
    // The transaction is gone.
    assert_eq!(
        error_text(&raw.call(&["EXEC"]).await),
        "ERR EXEC without MULTI"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_holds_from_watch_to_exec() {
    let harness = shared();
    let mut raw = Raw::connect(harness.addr()).await;
    let mut other = Raw::connect(harness.addr()).await;
    assert_eq!(raw.call(&["SET", "{w}k", "1"]).await, ok());

    // Unchanged: it runs.
    assert_eq!(raw.call(&["WATCH", "{w}k"]).await, ok());
    assert_eq!(raw.call(&["GET", "{w}k"]).await, bulk("1"));
    assert_eq!(raw.call(&["MULTI"]).await, ok());
    assert_eq!(raw.call(&["INCR", "{w}k"]).await, queued());
    assert_eq!(raw.call(&["EXEC"]).await, Value::Array(vec![Value::Int(2)]));

    // Changed by another client in between: EXEC answers Redis's null array, nothing runs.
    assert_eq!(raw.call(&["WATCH", "{w}k", "{w}j"]).await, ok());
    assert_eq!(other.call(&["SET", "{w}j", "x"]).await, ok());
    assert_eq!(raw.call(&["MULTI"]).await, ok());
    assert_eq!(raw.call(&["INCR", "{w}k"]).await, queued());
    raw.send(&frame(&[b"EXEC"])).await;
    assert_eq!(raw.read_bytes(5).await, b"*-1\r\n");
    assert_eq!(raw.call(&["GET", "{w}k"]).await, bulk("2"));

    // The watch ended with that EXEC: a change now does not stop the next one.
    assert_eq!(other.call(&["SET", "{w}k", "5"]).await, ok());
    assert_eq!(raw.call(&["MULTI"]).await, ok());
    assert_eq!(raw.call(&["INCR", "{w}k"]).await, queued());
    assert_eq!(raw.call(&["EXEC"]).await, Value::Array(vec![Value::Int(6)]));

    // UNWATCH, and DISCARD, end a watch too: a change after them stops nothing.
    for end in [&["UNWATCH"][..], &["MULTI"]] {
        assert_eq!(raw.call(&["WATCH", "{w}k"]).await, ok());
        assert_eq!(raw.call(end).await, ok());
        if end == ["MULTI"] {
            assert_eq!(raw.call(&["DISCARD"]).await, ok());
        }
        assert!(matches!(other.call(&["INCR", "{w}k"]).await, Value::Int(_)));
        assert_eq!(raw.call(&["MULTI"]).await, ok());
        assert_eq!(raw.call(&["GET", "{w}k"]).await, queued());
        assert!(
            matches!(raw.call(&["EXEC"]).await, Value::Array(_)),
            "after {end:?}"
        );
    }

    // RESP3 gets its null.
    let mut resp3 = Raw::connect(harness.addr()).await;
    assert!(matches!(resp3.call(&["HELLO", "3"]).await, Value::Map(_)));
    assert_eq!(resp3.call(&["WATCH", "{w}k"]).await, ok());
    assert_eq!(other.call(&["DEL", "{w}k"]).await, Value::Int(1));
    assert_eq!(resp3.call(&["MULTI"]).await, ok());
    assert_eq!(resp3.call(&["SET", "{w}k", "r3"]).await, queued());
    resp3.send(&frame(&[b"EXEC"])).await;
    assert_eq!(resp3.read_bytes(3).await, b"_\r\n");

    // Refusals: WATCH inside MULTI (the transaction goes on), keys of another slot.
    assert_eq!(raw.call(&["MULTI"]).await, ok());
    assert_eq!(
        error_text(&raw.call(&["WATCH", "{w}k"]).await),
        "ERR WATCH inside MULTI is not allowed"
    );
    assert_eq!(raw.call(&["SET", "{w}k", "7"]).await, queued());
    assert_eq!(raw.call(&["EXEC"]).await, Value::Array(vec![ok()]));
    assert_eq!(
        error_text(&raw.call(&["WATCH", "cross:a", "cross:b"]).await),
        CROSSSLOT
    );
    assert_eq!(raw.call(&["WATCH", "{w}k"]).await, ok());
    assert_eq!(
        error_text(&raw.call(&["WATCH", "cross:a"]).await),
        CROSSSLOT
    );
    assert_eq!(raw.call(&["MULTI"]).await, ok());
    assert_eq!(raw.call(&["SET", "cross:a", "1"]).await, queued());
    assert_eq!(error_text(&raw.call(&["EXEC"]).await), CROSSSLOT);
    assert_eq!(raw.call(&["GET", "cross:a"]).await, Value::Null);

    // The redis crate's optimistic locking loop.
    let mut con = connect(harness.addr(), false).await;
    let () = con.set("{w}balance", 10).await.unwrap();
    let (doubled,): (i64,) = redis::transaction(
        &mut direct(&harness.addr().to_string()),
        &["{w}balance"],
        |con, pipe| {
            let balance: i64 = redis::Commands::get(con, "{w}balance")?;
            pipe.set("{w}balance", balance * 2)
                .ignore()
                .get("{w}balance")
                .query(con)
        },
    )
    .unwrap();
    assert_eq!(doubled, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_lost_while_queued_are_checked_again_at_exec() {
    let harness = shared();
    let mut admin = Raw::connect(harness.addr()).await;
    let created = admin
        .call(&["ACL", "SETUSER", "txacl", "on", ">pw", "~{txacl}*", "+@all"])
        .await;
    assert_eq!(created, ok());
    let mut user = Raw::connect(harness.addr()).await;
    assert_eq!(user.call(&["AUTH", "txacl", "pw"]).await, ok());
    assert_eq!(user.call(&["MULTI"]).await, ok());
    assert_eq!(user.call(&["SET", "{txacl}a", "1"]).await, queued());
    assert_eq!(user.call(&["GET", "{txacl}a"]).await, queued());
    assert_eq!(user.call(&["INCR", "{txacl}n"]).await, queued());
    let revoked = admin.call(&["ACL", "SETUSER", "txacl", "-get"]).await;
    assert_eq!(revoked, ok());
    let Value::Array(replies) = user.call(&["EXEC"]).await else {
        panic!("EXEC answers an array");
    };
    assert_eq!(replies.len(), 3);
    assert_eq!((&replies[0], &replies[2]), (&ok(), &Value::Int(1)));
    assert_eq!(
        error_text(&replies[1]),
        "NOPERM ACLs rules changed between the moment the transaction was accumulated and the \
         EXEC call. This command is no longer allowed for the following reason: no permission \
         to execute the 'get' command."
    );
    assert_eq!(
        admin.call(&["ACL", "DELUSER", "txacl"]).await,
        Value::Int(1)
    );
}
