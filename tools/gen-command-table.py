#!/usr/bin/env python3
"""Generate Shoal's Redis 7 command table from a real redis-server.

Starts a private redis-server on a free loopback port (no persistence, cluster mode enabled so that
`CLUSTER HELP` answers), speaks RESP3 to it over a
raw socket, and records `COMMAND INFO`, `COMMAND DOCS` and `<CONTAINER> HELP` for the commands
Shoal implements (COMMANDS / SUBCOMMANDS below). Subcommands Shoal does not implement are dropped,
and the rest sorted by name (Redis lists them in hash-table order, which changes with every run);
everything else is kept exactly as Redis returned it, reply types and order included. The result is
written to crates/shoal-proto/src/command_table/redis7.rs (then formatted with rustfmt), so that
Shoal's COMMAND / COMMAND INFO / COMMAND DOCS / HELP replies are byte-identical to Redis's.

Commands of later Redis versions than the one recorded (Redis 7.4's hash field expiry, 8.0's
HGETDEL/HGETEX/HSETEX) cannot be recorded from it: LATER_COMMANDS below describes each by hand (arity,
flags, ACL categories, key spec, docs summary and arguments, as Redis's own JSON command files do),
and the generator turns each into the COMMAND INFO entry and COMMAND DOCS map Redis would send, in
the same shapes as the recorded ones. They are emitted with the others, and listed with their ACL
categories. A command the recorded Redis has must not be described here.

Shoal's own commands, which no Redis has (the sharded counters' COUNTER.INCRBY, COUNTER.GET and
COUNTER.DEL), are described the same way in SHOAL_COMMANDS, a section of their own.

Re-run it whenever Shoal gains a command or subcommand (edit the lists below first), or to record
the table from another Redis version:

    python3 tools/gen-command-table.py [--redis-server PATH]

Run from the repository root. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Top-level commands Shoal implements.
COMMANDS = """
acl append asking auth bitcount bitfield bitfield_ro bitop bitpos client cluster command config copy
dbsize decr decrby del discard echo exec exists expire expireat expiretime flushall flushdb get
getbit getdel getex getrange getset hdel hello hexists hget hgetall hincrby hincrbyfloat hkeys hlen
hmget hmset hrandfield hscan hset hsetnx hstrlen hvals incr incrby incrbyfloat info keys latency lcs memory
mget mset msetnx multi object persist pexpire pexpireat pexpiretime ping psetex psubscribe psync
pttl publish pubsub punsubscribe quit randomkey readonly readwrite rename renamenx replconf reset
scan select set setbit setex setnx spublish ssubscribe subscribe sunsubscribe unsubscribe
setrange shutdown slowlog strlen time touch ttl type unlink unwatch wait watch
eval evalsha eval_ro evalsha_ro script function fcall fcall_ro
""".split()

# Subcommands Shoal implements, per container; every other subcommand is dropped.
SUBCOMMANDS = {
    "acl": [
        "setuser", "getuser", "deluser", "list", "users", "whoami", "cat", "log", "genpass", "dryrun",
        "save", "load", "help",
    ],
    "client": [
        "id", "setname", "getname", "list", "info", "kill", "tracking", "caching", "getredir",
        "trackinginfo", "help",
    ],
    "cluster": [
        "shards", "slots", "nodes", "myid", "info", "keyslot", "countkeysinslot", "getkeysinslot",
        "failover", "help",
    ],
    "command": ["count", "info", "docs", "list", "getkeys", "help"],
    "config": ["get", "set", "resetstat", "help"],
    "slowlog": ["get", "len", "reset", "help"],
    "latency": ["doctor", "graph", "help", "histogram", "history", "latest", "reset"],
    "memory": ["usage", "help"],
    "object": ["encoding", "idletime", "freq", "refcount", "help"],
    "pubsub": ["channels", "numsub", "numpat", "shardchannels", "shardnumsub", "help"],
    "script": ["load", "exists", "flush", "kill", "help"],
    "function": ["load", "list", "delete", "flush", "dump", "restore", "stats", "kill", "help"],
}


def _arg(name: str, type_: str, token: str | None = None, flags: tuple = (), args: list | None = None,
         since: str | None = None, key: bool = False) -> dict:
    return {"name": name, "type": type_, "token": token, "flags": flags, "args": args,
            "since": since, "key": key}


def _fields(*per_field: dict) -> dict:
    """The `FIELDS numfields field [field ...]` block of the hash field commands."""
    if len(per_field) == 1:
        data = _arg(per_field[0]["name"], per_field[0]["type"], flags=("multiple",))
    else:
        data = _arg("data", "block", flags=("multiple",), args=list(per_field))
    return _arg("fields", "block", token="FIELDS", args=[_arg("numfields", "integer"), data])


def _expire_condition() -> dict:
    return _arg("condition", "oneof", flags=("optional",), since="7.4.0", args=[
        _arg(c.lower(), "pure-token", token=c) for c in ("NX", "XX", "GT", "LT")])


def _expire_command(summary: str, time_arg: str, since="7.4.0") -> dict:
    return {"arity": -6, "flags": ["write", "denyoom", "fast"], "acl": ["@write", "@hash", "@fast"],
            "key_flags": ["RW", "update"], "summary": summary, "since": since,
            "complexity": "O(N) where N is the number of specified fields",
            "args": [_arg("key", "key", key=True), _arg(time_arg, "integer"), _expire_condition(),
                     _fields(_arg("field", "string"))]}


def _ttl_command(summary: str) -> dict:
    return {"arity": -5, "flags": ["readonly", "fast"], "acl": ["@read", "@hash", "@fast"],
            "key_flags": ["RO", "access"], "summary": summary, "since": "7.4.0",
            "complexity": "O(N) where N is the number of specified fields",
            "args": [_arg("key", "key", key=True), _fields(_arg("field", "string"))]}


def _time_options(last: tuple[str, str]) -> dict:
    units = [("seconds", "EX"), ("milliseconds", "PX"), ("unix-time-seconds", "EXAT"),
             ("unix-time-milliseconds", "PXAT")]
    return _arg("expiration", "oneof", flags=("optional",), args=[
        _arg(n, "integer", token=t) for n, t in units] + [_arg(last[0], "pure-token", token=last[1])])


def _hotkeys_sub(arity: int, summary: str, complexity: str, args: list | None = None) -> dict:
    return {"arity": arity, "flags": ["admin", "noscript"], "acl": ["@admin", "@slow", "@dangerous"],
            "group": "server", "summary": summary, "since": "8.6.0", "complexity": complexity,
            "args": args or []}


# Commands of later Redis versions, described by hand (see the module's docstring).
LATER_COMMANDS = {
    "hexpire": _expire_command("Set expiry for hash field using relative time to expire (seconds)",
                               "seconds"),
    "hpexpire": _expire_command(
        "Set expiry for hash field using relative time to expire (milliseconds)", "milliseconds"),
    "hexpireat": _expire_command("Set expiry for hash field using an absolute Unix timestamp (seconds)",
                                 "unix-time-seconds"),
    "hpexpireat": _expire_command(
        "Set expiry for hash field using an absolute Unix timestamp (milliseconds)",
        "unix-time-milliseconds"),
    "httl": _ttl_command("Returns the TTL in seconds of a hash field."),
    "hpttl": _ttl_command("Returns the TTL in milliseconds of a hash field."),
    "hexpiretime": _ttl_command("Returns the expiration time of a hash field as a Unix timestamp, in seconds."),
    "hpexpiretime": _ttl_command(
        "Returns the expiration time of a hash field as a Unix timestamp, in msec."),
    "hpersist": {"arity": -5, "flags": ["write", "fast"], "acl": ["@write", "@hash", "@fast"],
                 "key_flags": ["RW", "update"], "summary": "Removes the expiration time for each specified field",
                 "since": "7.4.0", "complexity": "O(N) where N is the number of specified fields",
                 "args": [_arg("key", "key", key=True), _fields(_arg("field", "string"))]},
    "hgetdel": {"arity": -5, "flags": ["write", "fast"], "acl": ["@write", "@hash", "@fast"],
                "key_flags": ["RW", "access", "delete"],
                "summary": "Returns the value of a field and deletes it from the hash.", "since": "8.0.0",
                "complexity": "O(N) where N is the number of specified fields",
                "args": [_arg("key", "key", key=True), _fields(_arg("field", "string"))]},
    "hgetex": {"arity": -5, "flags": ["write", "fast"], "acl": ["@write", "@hash", "@fast"],
               "key_flags": ["RW", "access", "update"],
               "summary": "Get the value of one or more fields of a given hash key, and optionally set their expiration.",
               "since": "8.0.0", "complexity": "O(N) where N is the number of specified fields",
               "args": [_arg("key", "key", key=True), _time_options(("persist", "PERSIST")),
                        _fields(_arg("field", "string"))]},
    "hsetex": {"arity": -6, "flags": ["write", "denyoom", "fast"], "acl": ["@write", "@hash", "@fast"],
               "key_flags": ["RW", "update"],
               "summary": "Set the value of one or more fields of a given hash key, and optionally set their expiration.",
               "since": "8.0.0", "complexity": "O(N) where N is the number of fields being set.",
               "args": [_arg("key", "key", key=True),
                        _arg("condition", "oneof", flags=("optional",), args=[
                            _arg("fnx", "pure-token", token="FNX"), _arg("fxx", "pure-token", token="FXX")]),
                        _time_options(("keepttl", "KEEPTTL")),
                        _fields(_arg("field", "string"), _arg("value", "string"))]},
    # Redis 8.6 (src/commands/hotkeys*.json): a container of four keyless ADMIN NOSCRIPT
    # subcommands. The JSON files recorded no command tips; redis/redis#14761 (merged before
    # 8.6.0) mentions "special" request/response policies whose exact tips could not be
    # confirmed, so none are described.
    "hotkeys": {"arity": -2, "flags": [], "acl": ["@slow"], "group": "server",
                "summary": "A container for hotkeys tracking commands.", "since": "8.6.0",
                "complexity": "Depends on subcommand.", "args": [],
                "subcommands": {
                    "get": _hotkeys_sub(2, "Returns lists of top K hotkeys depending on metrics chosen in HOTKEYS START command.",
                                        "O(K) where K is the number of hotkeys returned."),
                    "reset": _hotkeys_sub(2, "Release the resources used for hotkey tracking.", "O(1)"),
                    "start": _hotkeys_sub(-2, "Starts hotkeys tracking.", "O(1)", [
                        _arg("metrics", "block", token="METRICS", args=[
                            _arg("count", "integer"),
                            _arg("cpu", "pure-token", token="CPU", flags=("optional",)),
                            _arg("net", "pure-token", token="NET", flags=("optional",))]),
                        _arg("k", "integer", token="COUNT", flags=("optional",)),
                        _arg("seconds", "integer", token="DURATION", flags=("optional",)),
                        _arg("ratio", "integer", token="SAMPLE", flags=("optional",)),
                        _arg("slots", "block", token="SLOTS", flags=("optional",), args=[
                            _arg("count", "integer"), _arg("slot", "integer", flags=("multiple",))])]),
                    "stop": _hotkeys_sub(2, "Stops hotkeys tracking.", "O(1)"),
                }},
}


def _counter_command(arity: int, flags: list[str], acl: list[str], key_flags: list[str],
                     summary: str, complexity: str, args: list) -> dict:
    return {"arity": arity, "flags": flags, "acl": acl, "key_flags": key_flags, "group": "string",
            "summary": summary, "since": SHOAL_SINCE, "complexity": complexity,
            "args": [_arg("key", "key", key=True), _arg("parts", "integer")] + args}


# Shoal's version that added its own commands below, as their docs' `since` (a module's commands
# give its version there too).
SHOAL_SINCE = "0.1.0"

# Shoal-only commands: no Redis version has them, so they are described by hand as LATER_COMMANDS
# are, and must never be found in the recorded Redis either. Module-style names (`COUNTER.*`), as
# Redis modules name theirs, so they cannot collide with a future Redis command. They are built in,
# not a module: the group is `string` (they work on string counters) and there is no `module` flag.
#
# Sharded counters (shoal-client's `sharded_counter`): one counter kept as parts `key#1`..`key#N`.
# The key spec names only `key` (the first argument), so ACL key patterns are checked against
# `key` and cover its parts; a cluster client routing by it reaches a node that refuses (the parts
# span slots). `no_multi` and `noscript`: a transaction or a script runs on one node with its keys
# in one slot, which the parts are not, so Shoal refuses them there everywhere (a standalone node
# included) and an application behaves the same against one node and a cluster.
SHOAL_COMMANDS = {
    "counter.incrby": _counter_command(
        4, ["write", "denyoom", "noscript", "fast", "no_multi"], ["@write", "@string", "@fast"],
        ["RW", "access", "update"],
        "Increments one part, picked at random, of a sharded counter; returns that part's new value.",
        "O(1)", [_arg("increment", "integer")]),
    "counter.get": _counter_command(
        3, ["readonly", "noscript", "fast", "no_multi"], ["@read", "@string", "@fast"],
        ["RO", "access"],
        "Returns the sum of the parts of a sharded counter (missing parts count 0).",
        "O(N) where N is the number of parts.", []),
    "counter.del": _counter_command(
        3, ["write", "noscript", "no_multi"], ["@keyspace", "@write", "@string", "@slow"],
        ["RM", "delete"],
        "Deletes the parts of a sharded counter; returns how many existed.",
        "O(N) where N is the number of parts.", []),
}


# Subcommands of a recorded container that the recorded Redis lacks, described by hand as
# LATER_COMMANDS are: container -> {subcommand: description, with `help`, the lines its
# container's HELP gains, put before HELP's own}. A subcommand the recorded Redis has must not be
# described here.
#
# CLUSTER MIGRATESLOTS: Valkey 9.0's (src/commands/cluster-migrateslots.json), without Valkey's
# `ALL_DBS` flag (Redis has none) and the AUTH arguments of its 10.0. In Shoal any node takes it
# and the controller moves the slots from whichever shards own them.
LATER_SUBCOMMANDS = {
    "cluster": {
        "migrateslots": {
            "arity": -4, "flags": ["admin", "stale", "no_async_loading"],
            "acl": ["@admin", "@slow", "@dangerous"], "group": "cluster", "since": "9.0.0",
            "summary": "Migrate the given slots from this node to the specified nodes.",
            "complexity": "O(N) where N is the total number of the slots between all start slot "
                          "and end slot arguments.",
            "args": [_arg("migration-group", "block", flags=("multiple",), args=[
                _arg("slotsrange-token", "pure-token", token="SLOTSRANGE"),
                _arg("range", "block", flags=("multiple",), args=[
                    _arg("start-slot", "integer"), _arg("end-slot", "integer")]),
                _arg("node-token", "pure-token", token="NODE"),
                _arg("node-id", "string")])],
            "help": [
                "MIGRATESLOTS SLOTSRANGE <start-slot> <end-slot> [<start-slot> <end-slot> ...] NODE <node-id>",
                "    Move the slots, with their keys, to the shard of <node-id> (Valkey 9's command).",
            ],
        },
    },
}


def add_later_subcommands(specs: list["Spec"], acl_commands: list[tuple[str, list[str]]]):
    """Adds LATER_SUBCOMMANDS to their recorded containers: each one's info to the container's
    info, its docs to the container's docs, its lines to the container's HELP, sorted by name as
    the recorded ones."""
    recorded = {name for name, _ in acl_commands}
    for container, subs in LATER_SUBCOMMANDS.items():
        spec = next((s for s in specs if s.name == container), None)
        if spec is None:
            raise GenError(f"LATER_SUBCOMMANDS: no recorded container {container!r}")
        for sub, d in sorted(subs.items()):
            full = f"{container}|{sub}"
            if full in recorded:
                raise GenError(f"{full} is in the recorded Redis: record it, do not describe it")
            sub_spec = later_spec(full, d)
            spec.subcommands.append(sub_spec)
            spec.subcommands.sort(key=lambda x: x.name.encode())
            listed = spec.info.data[9]
            entries = sorted(listed.data + [sub_spec.info], key=lambda x: x.data[0].data)
            spec.info.data[9] = Value(listed.kind, entries)
            for i in range(0, len(spec.docs.data), 2):
                if spec.docs.data[i].text() == "subcommands":
                    items = spec.docs.data[i + 1].map_items() + [(_bulk(full), sub_spec.docs)]
                    items.sort(key=lambda kv: kv[0].data)
                    spec.docs.data[i + 1] = Value("map", [x for kv in items for x in kv])
            at = next(i for i, line in enumerate(spec.help) if line.startswith("HELP"))
            spec.help[at:at] = d["help"]
            acl_commands.append((full, [c.lstrip("@") for c in d["acl"]]))


def _bulk(s: str) -> "Value":
    return Value("bulk", s.encode())


def _pairs(items: list[tuple[str, "Value"]]) -> "Value":
    return Value("map", [x for k, v in items for x in (_bulk(k), v)])


def _docs_arg(a: dict) -> "Value":
    items = [("name", _bulk(a["name"])), ("type", _bulk(a["type"]))]
    if a["key"]:
        items.append(("key_spec_index", Value("int", 0)))
    if a["token"]:
        items.append(("token", _bulk(a["token"])))
    if a["since"]:
        items.append(("since", _bulk(a["since"])))
    if a["flags"]:
        items.append(("flags", Value("set", [Value("simple", f.encode()) for f in a["flags"]])))
    if a["args"]:
        items.append(("arguments", Value("array", [_docs_arg(x) for x in a["args"]])))
    return _pairs(items)


def later_spec(name: str, d: dict) -> "Spec":
    """The spec of a hand-described command, shaped as Redis would send its info and docs: one key
    at index 1 if it has `key_flags`, none otherwise; a container's `subcommands` (sorted by name,
    as the recorded ones) are described the same way."""
    simple = lambda words: Value("set", [Value("simple", w.encode()) for w in words])
    key_specs, keys = [], (0, 0, 0)
    if "key_flags" in d:
        key_specs = [_pairs([
            ("flags", simple(d["key_flags"])),
            ("begin_search", _pairs([("type", _bulk("index")),
                                     ("spec", _pairs([("index", Value("int", 1))]))])),
            ("find_keys", _pairs([("type", _bulk("range")),
                                  ("spec", _pairs([("lastkey", Value("int", 0)), ("keystep", Value("int", 1)),
                                                   ("limit", Value("int", 0))]))])),
        ])]
        keys = (1, 1, 1)
    subs = [later_spec(f"{name}|{sub}", sd) for sub, sd in sorted(d.get("subcommands", {}).items())]
    info = Value("array", [
        _bulk(name), Value("int", d["arity"]), simple(d["flags"]), Value("int", keys[0]),
        Value("int", keys[1]), Value("int", keys[2]), simple(d["acl"]), Value("set", []),
        Value("set", key_specs),
        Value("array", [s.info for s in subs]) if subs else Value("set", []),
    ])
    items = [
        ("summary", _bulk(d["summary"])), ("since", _bulk(d["since"])),
        ("group", _bulk(d.get("group", "hash"))), ("complexity", _bulk(d["complexity"])),
    ]
    if d["args"]:
        items.append(("arguments", Value("array", [_docs_arg(a) for a in d["args"]])))
    if subs:
        items.append(("subcommands", Value("map", [x for s in subs for x in (_bulk(s.name), s.docs)])))
    spec = spec_from_entry(info, _pairs(items), f"LATER_COMMANDS {name}")
    spec.subcommands = subs
    return spec


# Flag names as COMMAND INFO shows them -> constants of command_table::flags. Other flags (e.g.
# "module", "asking") are kept in the info tree but have no bit.
FLAG_BITS = {
    "write": "WRITE",
    "readonly": "READONLY",
    "denyoom": "DENYOOM",
    "admin": "ADMIN",
    "pubsub": "PUBSUB",
    "noscript": "NOSCRIPT",
    "blocking": "BLOCKING",
    "loading": "LOADING",
    "stale": "STALE",
    "skip_monitor": "SKIP_MONITOR",
    "skip_slowlog": "SKIP_SLOWLOG",
    "fast": "FAST",
    "no_auth": "NO_AUTH",
    "may_replicate": "MAY_REPLICATE",
    "no_mandatory_keys": "NO_MANDATORY_KEYS",
    "no_multi": "NO_MULTI",
    "movablekeys": "MOVABLE_KEYS",
    "allow_busy": "ALLOW_BUSY",
}

OUTPUT = Path("crates/shoal-proto/src/command_table/redis7.rs")
ACL_OUTPUT = Path("crates/shoal-proto/src/command_table/acl_redis7.rs")

# Redis's ACL categories, in the order of its ACLCommandCategories table (ACL CAT lists them so).
ACL_CATEGORIES = """
keyspace read write set sortedset list hash string bitmap hyperloglog geo stream pubsub admin fast
slow blocking dangerous connection transaction scripting
""".split()


class GenError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# RESP3 values and parser


@dataclass
class Value:
    """A RESP3 reply element. kind: simple, bulk, int, array, set, map, null, error, double,
    bool, verbatim, bignum, push. For map, items alternate key, value."""

    kind: str
    data: object = None

    def text(self) -> str:
        if self.kind not in ("simple", "bulk", "verbatim"):
            raise GenError(f"expected a string, got {self.kind}: {self!r}")
        return self.data.decode()

    def map_items(self) -> list[tuple["Value", "Value"]]:
        if self.kind != "map":
            raise GenError(f"expected a map, got {self.kind}")
        return list(zip(self.data[0::2], self.data[1::2]))

    def to_py(self):
        """A plain Python rendering, for messages and debugging."""
        if self.kind in ("array", "set", "push"):
            return [v.to_py() for v in self.data]
        if self.kind == "map":
            return {k.to_py(): v.to_py() for k, v in self.map_items()}
        if isinstance(self.data, bytes):
            return self.data.decode(errors="replace")
        return self.data


class RespConnection:
    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise GenError("redis-server closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2 :]
                return line
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, tail, self.buf = self.buf[:n], self.buf[n : n + 2], self.buf[n + 2 :]
        if tail != b"\r\n":
            raise GenError("protocol error: bulk payload not followed by CRLF")
        return data

    def read(self) -> Value:
        line = self._line()
        if not line:
            raise GenError("protocol error: empty line")
        t, rest = line[:1], line[1:]
        if t == b"+":
            return Value("simple", rest)
        if t == b"-":
            return Value("error", rest)
        if t == b":":
            return Value("int", int(rest))
        if t == b"(":
            return Value("bignum", int(rest))
        if t == b",":
            return Value("double", rest)
        if t == b"#":
            return Value("bool", rest == b"t")
        if t == b"_":
            return Value("null")
        if t in (b"$", b"=", b"!"):
            n = int(rest)
            if n < 0:
                return Value("null")
            data = self._exact(n)
            kind = {b"$": "bulk", b"=": "verbatim", b"!": "error"}[t]
            return Value(kind, data)
        if t in (b"*", b"~", b">"):
            n = int(rest)
            if n < 0:
                return Value("null")
            kind = {b"*": "array", b"~": "set", b">": "push"}[t]
            return Value(kind, [self.read() for _ in range(n)])
        if t == b"%":
            n = int(rest)
            items = []
            for _ in range(n):
                items.append(self.read())
                items.append(self.read())
            return Value("map", items)
        if t == b"|":
            raise GenError("unexpected RESP3 attribute in reply")
        raise GenError(f"protocol error: unknown type byte {t!r}")

    def call(self, *args: str) -> Value:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        reply = self.read()
        if reply.kind == "error":
            raise GenError(f"{' '.join(args)}: {reply.data.decode(errors='replace')}")
        return reply


# ---------------------------------------------------------------------------------------------
# redis-server lifecycle


def free_port() -> int:
    """A free loopback port below 22768, so that its cluster bus port (+10000) stays below 32768,
    the start of Linux's ephemeral range (an ephemeral port plus 10000 may not be valid at all)."""
    import random

    for _ in range(200):
        port = random.randrange(12000, 22768)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise GenError("no free loopback port between 12000 and 22768")


class RedisServer:
    def __init__(self, binary: str):
        self.binary = binary
        self.proc: subprocess.Popen | None = None
        self.tmpdir: str | None = None
        self.port = 0

    def __enter__(self) -> "RedisServer":
        self.tmpdir = tempfile.mkdtemp(prefix="shoal-gen-")
        try:
            self.port = free_port()
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--bind", "127.0.0.1",
                    "--port", str(self.port),
                    "--save", "",
                    "--appendonly", "no",
                    "--daemonize", "no",
                    "--dir", self.tmpdir,
                    "--logfile", os.path.join(self.tmpdir, "redis.log"),
                    # For CLUSTER HELP (COMMAND INFO is the same either way).
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", os.path.join(self.tmpdir, "nodes.conf"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while True:
                if self.proc.poll() is not None:
                    raise GenError(f"redis-server exited early (code {self.proc.returncode})" + self._log())
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise GenError("redis-server did not start listening" + self._log())
                    time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def _log(self) -> str:
        try:
            return "\n--- redis log ---\n" + Path(self.tmpdir, "redis.log").read_text()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------
# Recording


@dataclass
class Spec:
    name: str
    arity: int
    flags: list[str]
    first_key: int
    last_key: int
    step: int
    info: Value
    docs: Value
    subcommands: list["Spec"]
    help: list[str]


def check_no_null(v: Value, where: str):
    if v.kind == "null":
        raise GenError(f"{where}: Redis returned a null inside the reply")
    if v.kind in ("array", "set", "map", "push"):
        for x in v.data:
            check_no_null(x, where)


def spec_from_entry(entry: Value, docs: Value, where: str) -> Spec:
    if entry.kind != "array" or len(entry.data) < 10:
        raise GenError(f"{where}: unexpected COMMAND INFO entry shape: {entry.to_py()!r}")
    e = entry.data
    # Redis 7.0 sends key specs and an empty subcommand list as sets, a non-empty one as an array.
    expected = ["bulk", "int", "set", "int", "int", "int", "set", "set", "array|set", "array|set"]
    for i, kinds in enumerate(expected):
        if e[i].kind not in kinds.split("|"):
            raise GenError(f"{where}: COMMAND INFO entry element {i} is {e[i].kind}, expected {kinds}")
    if docs.kind != "map":
        raise GenError(f"{where}: COMMAND DOCS value is {docs.kind}, expected map")
    return Spec(
        name=e[0].text(),
        arity=e[1].data,
        flags=[f.text() for f in e[2].data],
        first_key=e[3].data,
        last_key=e[4].data,
        step=e[5].data,
        info=entry,
        docs=docs,
        subcommands=[],
        help=[],
    )


def record(conn: RespConnection) -> tuple[list[Spec], list[str]]:
    specs: list[Spec] = []
    missing: list[str] = []
    for name in COMMANDS:
        info = conn.call("COMMAND", "INFO", name)
        if info.kind != "array" or len(info.data) != 1:
            raise GenError(f"COMMAND INFO {name}: unexpected reply {info.to_py()!r}")
        entry = info.data[0]
        if entry.kind == "null":
            print(f"warning: Redis has no COMMAND INFO entry for {name!r}; dropping it", file=sys.stderr)
            missing.append(name)
            continue
        docs_reply = conn.call("COMMAND", "DOCS", name)
        items = docs_reply.map_items()
        if len(items) != 1 or items[0][0].text() != name:
            raise GenError(f"COMMAND DOCS {name}: unexpected reply {docs_reply.to_py()!r}")
        docs = items[0][1]
        check_no_null(entry, f"COMMAND INFO {name}")
        check_no_null(docs, f"COMMAND DOCS {name}")
        spec = spec_from_entry(entry, docs, f"COMMAND INFO {name}")
        if spec.name != name:
            raise GenError(f"COMMAND INFO {name}: entry is named {spec.name!r}")

        wanted = {f"{name}|{s}" for s in SUBCOMMANDS.get(name, [])}
        redis_subs = entry.data[9].data
        if redis_subs or wanted:
            # Redis lists subcommands in the iteration order of a hash table with a random seed,
            # so their order changes from one redis-server run to the next. Sort them by name (in
            # both the info entry and the docs map) so the output is reproducible.
            kept_entries = [s for s in redis_subs if s.data[0].text() in wanted]
            kept_entries.sort(key=lambda s: s.data[0].data)
            entry.data[9] = Value(entry.data[9].kind, kept_entries)
            sub_docs: dict[str, Value] = {}
            for i in range(0, len(docs.data), 2):
                if docs.data[i].text() == "subcommands":
                    kept = []
                    for k, v in sorted(docs.data[i + 1].map_items(), key=lambda kv: kv[0].data):
                        if k.text() in wanted:
                            kept += [k, v]
                            sub_docs[k.text()] = v
                    docs.data[i + 1] = Value("map", kept)
            found = {s.data[0].text() for s in kept_entries}
            if found != wanted or set(sub_docs) != wanted:
                raise GenError(
                    f"{name}: Redis lacks subcommands {sorted(wanted - found)} (info) /"
                    f" {sorted(wanted - set(sub_docs))} (docs)"
                )
            for s in kept_entries:
                sname = s.data[0].text()
                spec.subcommands.append(spec_from_entry(s, sub_docs[sname], f"COMMAND INFO {sname}"))
            spec.subcommands.sort(key=lambda s: s.name.encode())
            help_reply = conn.call(name.upper(), "HELP")
            if help_reply.kind != "array" or any(x.kind != "simple" for x in help_reply.data):
                raise GenError(f"{name.upper()} HELP: expected an array of simple strings")
            spec.help = [x.text() for x in help_reply.data]
        specs.append(spec)
    specs.sort(key=lambda s: s.name.encode())
    return specs, missing


# ---------------------------------------------------------------------------------------------
# Rust emission


def rust_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def value_str(v: Value, what: str) -> str:
    try:
        s = v.data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GenError(f"{what}: reply string is not UTF-8: {v.data!r}") from e
    return rust_str(s)


def emit_value(v: Value, indent: int, what: str) -> str:
    """Renders a reply as a StaticValue expression (aliased V); short containers stay on one line."""
    pad = "    " * (indent + 1)
    end = "    " * indent
    if v.kind == "simple":
        return f"V::Simple({value_str(v, what)})"
    if v.kind == "bulk":
        return f"V::Bulk({value_str(v, what)})"
    if v.kind == "int":
        if not -(2**63) <= v.data < 2**63:
            raise GenError(f"{what}: integer out of i64 range: {v.data}")
        return f"V::Int({v.data})"
    if v.kind in ("array", "set", "map"):
        ctor = {"array": "Array", "set": "Set", "map": "Map"}[v.kind]
        if not v.data:
            return f"V::{ctor}(&[])"
        parts = [emit_value(x, indent + 1, what) for x in v.data]
        one_line = f"V::{ctor}(&[{', '.join(parts)}])"
        if len(one_line) + len(pad) <= 100 and "\n" not in one_line:
            return one_line
        if v.kind == "map":
            lines = [f"{pad}{k}, {val}," for k, val in zip(parts[0::2], parts[1::2])]
        else:
            lines = [f"{pad}{p}," for p in parts]
        return f"V::{ctor}(&[\n" + "\n".join(lines) + f"\n{end}])"
    if v.kind == "null":
        raise GenError(f"{what}: Redis returned a null")
    raise GenError(f"{what}: reply type {v.kind} has no StaticValue counterpart")


def const_name(name: str) -> str:
    return name.upper().replace("|", "_").replace("-", "_").replace(".", "_")


def flags_expr(spec: Spec) -> str:
    bits = [FLAG_BITS[f] for f in spec.flags if f in FLAG_BITS]
    return " | ".join(bits) if bits else "0"


def emit_spec(spec: Spec, indent: int) -> str:
    pad = "    " * (indent + 1)
    end = "    " * indent
    c = const_name(spec.name)
    lines = [
        f"{pad}name: {rust_str(spec.name)},",
        f"{pad}arity: {spec.arity},",
        f"{pad}flags: {flags_expr(spec)},",
        f"{pad}first_key: {spec.first_key},",
        f"{pad}last_key: {spec.last_key},",
        f"{pad}step: {spec.step},",
        f"{pad}info: &{c}_INFO,",
        f"{pad}docs: &{c}_DOCS,",
    ]
    if spec.subcommands:
        lines.append(f"{pad}subcommands: &[")
        lines += [f"{pad}    {emit_spec(s, indent + 2)}," for s in spec.subcommands]
        lines.append(f"{pad}],")
    else:
        lines.append(f"{pad}subcommands: &[],")
    if spec.help:
        lines.append(f"{pad}help: &[")
        lines += [f"{pad}    {rust_str(h)}," for h in spec.help]
        lines.append(f"{pad}],")
    else:
        lines.append(f"{pad}help: &[],")
    return "CommandSpec {\n" + "\n".join(lines) + f"\n{end}}}"


def emit_consts(spec: Spec, out: list[str]):
    """Consts for a spec's info and docs. A container's info embeds its subcommands' info consts,
    so each subcommand's tree is written once."""
    c = const_name(spec.name)
    for s in spec.subcommands:
        emit_consts(s, out)
    info = spec.info
    if spec.subcommands:
        # Same tree, with the subcommand entries replaced by references to their consts.
        head = [emit_value(x, 1, f"{spec.name} info") for x in info.data[:9]]
        subs = [f"{const_name(x.data[0].text())}_INFO" for x in info.data[9].data]
        ctor = {"array": "Array", "set": "Set"}[info.data[9].kind]
        sub_arr = f"V::{ctor}(&[\n" + "".join(f"        {s},\n" for s in subs) + "    ])"
        body = "V::Array(&[\n" + "".join(f"    {p},\n" for p in head + [sub_arr]) + "])"
    else:
        body = emit_value(info, 0, f"{spec.name} info")
    out.append(f"const {c}_INFO: V = {body};\n")
    out.append(f"const {c}_DOCS: V = {emit_value(spec.docs, 0, f'{spec.name} docs')};\n")


def emit_file(specs: list[Spec], version: str) -> str:
    out = [
        f"// @generated by tools/gen-command-table.py from redis-server {version}. Do not edit by hand.\n",
        "\n",
        "//! Redis's `COMMAND INFO` entries and `COMMAND DOCS` maps for the commands Shoal implements.\n",
        "\n",
        "use super::flags::*;\n",
        "use super::{CommandSpec, StaticValue as V};\n",
        "\n",
    ]
    all_names = [n for s in specs for n in [s.name] + [x.name for x in s.subcommands]]
    consts = [const_name(n) + suffix for n in all_names for suffix in ("_INFO", "_DOCS")]
    if len(set(consts)) != len(consts):
        raise GenError("two commands map to the same Rust const name")
    for spec in specs:
        out.append(f"// {spec.name}\n")
        emit_consts(spec, out)
        out.append("\n")
    out.append("/// Every top-level command Shoal implements, sorted by name; subcommands sorted too.\n")
    out.append("pub(crate) static COMMANDS: &[CommandSpec] = &[\n")
    for spec in specs:
        out.append(f"    {emit_spec(spec, 1)},\n")
    out.append("];\n")
    return "".join(out)


# ---------------------------------------------------------------------------------------------


def record_acl(conn: RespConnection) -> list[tuple[str, list[str]]]:
    """Every command and subcommand of this Redis (not only Shoal's) with its ACL categories:
    ACL rules name any of them, and ACL LIST / GETUSER describe a user against all of them."""
    out: list[tuple[str, list[str]]] = []
    reply = conn.call("COMMAND")
    for entry in reply.data:
        e = entry.data
        for cmd in [entry] + list(e[9].data):
            c = cmd.data
            cats = [x.text().lstrip("@") for x in c[6].data]
            for cat in cats:
                if cat not in ACL_CATEGORIES:
                    raise GenError(f"{c[0].text()}: unknown ACL category {cat!r}")
            out.append((c[0].text().lower(), cats))
    out.sort()
    return out


def emit_acl_file(commands: list[tuple[str, list[str]]], version: str) -> str:
    lines = [
        f"// @generated by tools/gen-command-table.py from redis-server {version}. Do not edit by hand.",
        "",
        "//! Every command and subcommand of Redis (Shoal's and the others) with its ACL categories, sorted",
        "//! by full name: ACL rules may name any Redis command, and users are described against all.",
        "",
        "use super::acl::*;",
        "",
        "/// `(full name, categories)` of every Redis command and subcommand, sorted by name.",
        "pub(super) const ACL_COMMANDS: &[(&str, u32)] = &[",
    ]
    for name, cats in commands:
        bits = " | ".join(c.upper() for c in cats) or "0"
        lines.append(f"    ({name!r}, {bits}),".replace("'", '"'))
    lines.append("];")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--redis-server", default="/usr/bin/redis-server", help="redis-server binary")
    ap.add_argument("--output", default=str(OUTPUT), help="output file (default: %(default)s)")
    ap.add_argument("--no-rustfmt", action="store_true", help="do not run rustfmt on the output")
    args = ap.parse_args()

    try:
        with RedisServer(args.redis_server) as server:
            conn = RespConnection("127.0.0.1", server.port)
            try:
                hello = conn.call("HELLO", "3")
                version = next(v.text() for k, v in hello.map_items() if k.text() == "version")
                specs, missing = record(conn)
                acl_commands = record_acl(conn)
                recorded = {name for name, _ in acl_commands}
                for name, d in [*LATER_COMMANDS.items(), *SHOAL_COMMANDS.items()]:
                    if name in recorded:
                        raise GenError(f"{name} is in redis-server {version}: record it, do not describe it")
                    specs.append(later_spec(name, d))
                    acl_commands.append((name, [c.lstrip("@") for c in d["acl"]]))
                    for sub, sd in d.get("subcommands", {}).items():
                        acl_commands.append((f"{name}|{sub}", [c.lstrip("@") for c in sd["acl"]]))
                add_later_subcommands(specs, acl_commands)
                specs.sort(key=lambda s: s.name.encode())
                acl_commands.sort()
            finally:
                conn.close()
    except (GenError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    try:
        text = emit_file(specs, version)
    except GenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.write_text(text)
    acl_out = out.with_name(ACL_OUTPUT.name)
    acl_out.write_text(emit_acl_file(acl_commands, version))
    if not args.no_rustfmt:
        subprocess.run(["rustfmt", "--edition", "2024", str(out), str(acl_out)], check=True)
    nsubs = sum(len(s.subcommands) for s in specs)
    print(f"wrote {out}: {len(specs)} commands, {nsubs} subcommands, from redis-server {version}")
    for m in missing:
        print(f"warning: dropped {m!r} (no COMMAND INFO entry in this Redis)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
