#!/usr/bin/env python3
"""Drives the example server with an independent gRPC client (Python grpcio) and checks
what a user's clients would see: all four RPC kinds, every status the examples produce
with its exact message, google.rpc.BadRequest, grpc-retry-pushback-ms, gzip on the wire,
client deadlines, cancellation, health, reflection, and /metrics, call for call.

    python conformance.py [--server PATH]

Without --server it builds the example server with cargo (`cargo build -p
tonic-intercept-examples --bin server`, honouring CARGO_TARGET_DIR). It starts the server
on two free loopback ports, compiles the example protos to Python in a temporary
directory (grpcio-tools, no system protoc), runs every check in CHECKS, then those in
KNOWN_FAILING (reported, never failing the run), and stops the server by its PID, also on
failure. It exits non-zero at the first mismatch.

A check is one function taking the `Run` and returning a one-line summary; it records
every call it makes in `run.ledger` (what the server's /metrics must show for it) and
raises `Mismatch` when the server answers otherwise. After each check the runner scrapes
/metrics and compares the change of every grpc_server_* series of the two example
services with the ledger, exactly. Add a check by writing such a function and putting
it in CHECKS.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import importlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Iterator

import grpc
from google.protobuf import descriptor_pool
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

REPO = Path(__file__).resolve().parents[2]

# The example's constants (examples/src/users.rs, examples/src/orders.rs, callers.rs).
ADA = [("authorization", "Bearer ada-s3cret")]
BOB = [("authorization", "Bearer bob-s3cret")]  # a barista
LIST_USERS_MAX = 50
IMPORT_USERS_MAX = 100
CREATE_USER_PER_PEER_PER_SECOND = 5
PLACE_ORDER_PER_SECOND = 10
MAX_LIVE_FEEDS = 4
CHAT_IDLE_MS = 1_000
MAX_USERS = 10_000
UNICORN = "unicorn frappuccino"
FIRST_PLACED_ID = 1_001

USERS = "users.v1.UserService"
ORDERS = "coffee.v1.OrderService"
KINDS = {
    (USERS, "CreateUser"): "unary",
    (USERS, "GetUser"): "unary",
    (USERS, "ListUsers"): "server_stream",
    (USERS, "ImportUsers"): "client_stream",
    (USERS, "UserUpdates"): "bidi_stream",
    (ORDERS, "Subscribe"): "server_stream",
    (ORDERS, "UploadOrders"): "client_stream",
    (ORDERS, "Chat"): "bidi_stream",
    (ORDERS, "PlaceOrder"): "unary",
    (ORDERS, "CancelOrder"): "unary",
}
# grpc_code labels as the server spells them (grpc-go's names), by code number.
CODE_LABELS = [
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
    "Unauthenticated",
]
# The series compared after every check; the histogram's sum and buckets are timings.
FAMILIES = (
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_count",
    "grpc_server_msg_received_total",
    "grpc_server_msg_sent_total",
    "grpc_server_msg_received_bytes_total",
    "grpc_server_msg_sent_bytes_total",
    "grpc_server_rejected_total",
    "grpc_server_panics_total",
)
# Calls of a method a service does not have: counted by the edge under one label.
UNKNOWN_METHOD = "<unknown>"
# The size of a request message an RPC without its own max_message_bytes may send
# (runtime/src/server/edge.rs, DEFAULT_MAX_MESSAGE_BYTES: tonic's 4 MiB).
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 256  # ImportUsers' and UserUpdates' max_message_bytes (users.rs)
UPLOAD_ORDER_MAX_BYTES = 512  # UploadOrders' max_message_bytes (orders.rs)
SETTLE_SECONDS = 5.0  # how long the server may take to record calls that have ended


class Mismatch(Exception):
    """The server answered otherwise than the check expects."""


def ensure(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


def ensure_eq(what: str, got, want) -> None:
    if got != want:
        raise Mismatch(f"{what}: expected {want!r}, got {got!r}")


# ---------------------------------------------------------------------------------------
# Protos, server, metrics


def compile_protos(out: Path) -> None:
    """The example protos to Python, with grpcio-tools' bundled protoc. options.proto is
    served from memory by the Rust generator; its file lives in codegen/proto."""
    from grpc_tools import protoc

    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{REPO / 'examples' / 'proto'}",
        f"-I{REPO / 'codegen' / 'proto'}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        "users/v1/users.proto",
        "coffee/v1/orders.proto",
        "tonic_intercept/v1/options.proto",
    ]
    if protoc.main(args) != 0:
        raise SystemExit("grpcio-tools could not compile the example protos")


def build_server() -> Path:
    """Builds the example server with cargo and returns its path."""
    print("building the example server: cargo build -p tonic-intercept-examples --bin server")
    subprocess.run(
        ["cargo", "build", "-p", "tonic-intercept-examples", "--bin", "server"],
        cwd=REPO,
        check=True,
    )
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(json.loads(metadata.stdout)["target_directory"]) / "debug" / "server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The example server as a child process on two free loopback ports."""

    def __init__(self, binary: Path, workdir: Path):
        self.addr = f"127.0.0.1:{free_port()}"
        self.metrics_addr = f"127.0.0.1:{free_port()}"
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(binary), self.addr, self.metrics_addr],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.stdout: list[str] = []
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self.stdout.append(line.rstrip("\n"))
                if line.startswith("serving on"):
                    ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(30):
            self.stop()
            raise SystemExit(f"the server did not start within 30s:\n{self.log_tail()}")

    def metrics_text(self) -> str:
        url = f"http://{self.metrics_addr}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def finished_calls(self, last: int = 45) -> str:
        """The server's "finished call" events, the last `last`, one short line each."""
        self._log.flush()
        fields = re.compile(r'(rpc\.method|grpc\.code|duration_ms|messages_in|messages_out|ended_by)=("[^"]*"|\S+)')
        lines = []
        for line in self.log_path.read_text().splitlines():
            if "finished call" in line:
                found = dict(fields.findall(line))
                lines.append(f"    {line[:27]} " + " ".join(f"{k}={v}" for k, v in found.items()))
        return "\n".join(lines[-last:])

    def interrupt(self) -> None:
        """Ctrl-C: the server drains and exits."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)

    def stop(self) -> int | None:
        """Stops the server by its PID: SIGINT, then SIGKILL after 10s."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


Key = tuple  # (family, ((label, value), ...))
_SERIES = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, services: tuple[str, ...] | None = (USERS, ORDERS)) -> dict[Key, float]:
    """The compared series of `services` (of every service: None)."""
    ensure(text.endswith("# EOF\n"), "/metrics does not end with `# EOF`")
    series = {}
    for line in text.splitlines():
        match = _SERIES.match(line)
        if not match or match[1] not in FAMILIES:
            continue
        labels = tuple(sorted(_LABEL.findall(match[2])))
        if services is None or dict(labels).get("grpc_service") in services:
            series[(match[1], labels)] = float(match[3])
    return series


def show(key: Key) -> str:
    family, labels = key
    labels = dict(labels)
    rest = ",".join(
        f"{k}={v}" for k, v in labels.items() if k not in ("grpc_type", "grpc_service", "grpc_method")
    )
    return f"{family}{{{labels['grpc_method']}{',' + rest if rest else ''}}}"


# ---------------------------------------------------------------------------------------
# The ledger: what the server's /metrics must show for the calls a check made


class Ledger:
    """Expected changes of the grpc_server_* series, one `call` per RPC the client made."""

    def __init__(self) -> None:
        self.deltas: collections.Counter = collections.Counter()

    def call(
        self,
        rpc: str,
        code: grpc.StatusCode,
        received: Iterable = (),
        sent: Iterable = (),
        rejected: str | None = None,
        panic: bool = False,
    ) -> None:
        """One call of `rpc` ("Service/Method") that ended with `code`, after the server
        received the messages `received` and sent the messages `sent` (protobuf
        messages: counted and measured as encoded), refused by the policy `rejected`."""
        service, method = rpc.split("/")
        base = (
            ("grpc_method", method),
            ("grpc_service", service),
            ("grpc_type", KINDS[(service, method)]),
        )

        def key(family: str, *extra) -> Key:
            return (family, tuple(sorted(base + extra)))

        # The server counts a message once its policies let it through to the handler
        # (or out to the client): a call refused on its metadata (auth, roles, call
        # rate, concurrency) counts none received, and a message that a limit,
        # validation or a hook refuses is not counted either.
        received, sent = list(received), list(sent)
        self.deltas[key("grpc_server_started_total")] += 1
        label = CODE_LABELS[code.value[0]]
        self.deltas[key("grpc_server_handled_total", ("grpc_code", label))] += 1
        self.deltas[key("grpc_server_handling_seconds_count")] += 1
        self.deltas[key("grpc_server_msg_received_total")] += len(received)
        self.deltas[key("grpc_server_msg_sent_total")] += len(sent)
        self.deltas[key("grpc_server_msg_received_bytes_total")] += sum(m.ByteSize() for m in received)
        self.deltas[key("grpc_server_msg_sent_bytes_total")] += sum(m.ByteSize() for m in sent)
        if rejected:
            self.deltas[key("grpc_server_rejected_total", ("policy", rejected))] += 1
        if panic:
            self.deltas[key("grpc_server_panics_total")] += 1

    def unknown_method(self, service: str) -> None:
        """One call of a method `service` does not have: the edge counts it under
        grpc_method="<unknown>", grpc_type="unknown" (started, handled Unimplemented,
        rejected{policy="unknown_method"}); such a call has no message series."""
        base = (("grpc_method", UNKNOWN_METHOD), ("grpc_service", service), ("grpc_type", "unknown"))
        for family, *extra in (
            ("grpc_server_started_total",),
            ("grpc_server_handled_total", ("grpc_code", "Unimplemented")),
            ("grpc_server_handling_seconds_count",),
            ("grpc_server_rejected_total", ("policy", "unknown_method")),
        ):
            self.deltas[(family, tuple(sorted(base + tuple(extra))))] += 1

    def compare(self, before: dict[Key, float], after: dict[Key, float]) -> list[str]:
        problems = []
        for key in sorted(set(before) | set(after) | set(self.deltas)):
            got = after.get(key, 0) - before.get(key, 0)
            want = self.deltas.get(key, 0)
            if key not in after:
                problems.append(f"{show(key)}: no such series on /metrics")
            elif got != want:
                problems.append(f"{show(key)}: changed by {got:g}, expected {want}")
        return problems

    def summary(self) -> str:
        started = sum(v for (f, _), v in self.deltas.items() if f == "grpc_server_started_total")
        sent = sum(v for (f, _), v in self.deltas.items() if f == "grpc_server_msg_sent_total")
        received = sum(v for (f, _), v in self.deltas.items() if f == "grpc_server_msg_received_total")
        return f"{started} calls, {received} messages in, {sent} out"


# ---------------------------------------------------------------------------------------
# A wire tap: which gRPC messages went compressed


class WireTap:
    """A loopback TCP relay in front of the server that reads the HTTP/2 frames going
    through it and, per stream, the gRPC message prefixes of each direction: whether
    each message is compressed (the prefix's flag byte), and the stream's headers are
    not decoded (HPACK): only the framing is read."""

    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.buffers: dict[tuple[str, int], bytearray] = collections.defaultdict(bytearray)
        self.flags: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
        self.messages: dict[tuple[str, int], list[bytes]] = collections.defaultdict(list)
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for s in (client, server):  # no Nagle: a frame goes on at once, as it came
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, "request", 24), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "response", 0), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, side: str, preface: int) -> None:
        pending = bytearray()
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            except OSError:
                break
            pending += data
            if preface:
                skip = min(preface, len(pending))
                del pending[:skip]
                preface -= skip
            while len(pending) >= 9:
                length = int.from_bytes(pending[:3], "big")
                if len(pending) < 9 + length:
                    break
                kind, flags = pending[3], pending[4]
                stream = struct.unpack(">I", pending[5:9])[0] & 0x7FFFFFFF
                payload = bytes(pending[9 : 9 + length])
                del pending[: 9 + length]
                if kind == 0:  # DATA
                    if flags & 0x8:  # PADDED
                        payload = payload[1 : len(payload) - payload[0]]
                    self._data(side, stream, payload)
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _data(self, side: str, stream: int, payload: bytes) -> None:
        with self.lock:
            buffer = self.buffers[(side, stream)]
            buffer += payload
            while len(buffer) >= 5:
                length = int.from_bytes(buffer[1:5], "big")
                if len(buffer) < 5 + length:
                    break
                self.flags[(side, stream)].append(buffer[0])
                payload = bytes(buffer[5 : 5 + length])
                self.messages[(side, stream)].append(gzip.decompress(payload) if buffer[0] else payload)
                del buffer[: 5 + length]

    def streams(self) -> dict[int, tuple[list[int], list[int]]]:
        """The compressed flag of each message, by stream: (request's, response's)."""
        with self.lock:
            ids = sorted({stream for _, stream in self.flags})
            return {i: (list(self.flags[("request", i)]), list(self.flags[("response", i)])) for i in ids}

    def responses(self) -> list[list[bytes]]:
        """The response messages that went through to the client, by stream in order,
        uncompressed."""
        with self.lock:
            ids = sorted({stream for _, stream in self.flags})
            return [list(self.messages[("response", i)]) for i in ids]

    def close(self) -> None:
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------------------
# The run: stubs and helpers the checks share


class Run:
    def __init__(self, server: Server, gen: Path):
        sys.path.insert(0, str(gen))
        self.users_pb2 = importlib.import_module("users.v1.users_pb2")
        self.users_grpc = importlib.import_module("users.v1.users_pb2_grpc")
        self.orders_pb2 = importlib.import_module("coffee.v1.orders_pb2")
        self.orders_grpc = importlib.import_module("coffee.v1.orders_pb2_grpc")
        self.server = server
        self.channel = grpc.insecure_channel(server.addr)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.users = self.users_grpc.UserServiceStub(self.channel)
        self.orders = self.orders_grpc.OrderServiceStub(self.channel)
        self.ledger = Ledger()
        self.placed_by_bob: list = []  # orders bob placed and nobody cancelled yet

    # messages
    def user_request(self, name: str, email: str):
        return self.users_pb2.CreateUserRequest(name=name, email=email)

    def order_request(self, drink: str, quantity: int, shop: str = "soho"):
        return self.orders_pb2.PlaceOrderRequest(shop=shop, drink=drink, quantity=quantity)

    def chat_line(self, text: str, who: str = "ada"):
        return self.orders_pb2.ChatMessage(**{"from": who, "text": text})

    # calls
    def error_of(self, what: str, call: Callable[[], object]) -> grpc.RpcError:
        """The error `call` raised; a Mismatch when it succeeded."""
        try:
            result = call()
        except grpc.RpcError as error:
            return error
        raise Mismatch(f"{what}: expected an error, got OK: {result!r}"[:300])

    def ok(self, what: str, call: Callable[[], object]):
        try:
            return call()
        except grpc.RpcError as error:
            raise Mismatch(f"{what}: expected OK, got {error.code().name}: {error.details()}") from None


def expect_status(what: str, error: grpc.RpcError, code: grpc.StatusCode, message: str | re.Pattern) -> str:
    """`error` has `code` and exactly `message` (or a full match of the pattern); returns
    the message."""
    got = (error.code(), error.details())
    if isinstance(message, re.Pattern):
        ok = got[0] == code and message.fullmatch(got[1] or "") is not None
    else:
        ok = got == (code, message)
    ensure(ok, f"{what}: expected {code.name} {message!r}, got {got[0].name} {got[1]!r}")
    return got[1]


def trailer(error: grpc.RpcError, name: str) -> str | None:
    for key, value in error.trailing_metadata() or ():
        if key == name:
            return value
    return None


def pushback_of(what: str, error: grpc.RpcError, most_ms: int) -> int:
    """The grpc-retry-pushback-ms trailer: present, a whole number of 1..most_ms ms, and
    the same number the message names."""
    value = trailer(error, "grpc-retry-pushback-ms")
    ensure(value is not None and value.isdigit(), f"{what}: grpc-retry-pushback-ms is {value!r}")
    ms = int(value)
    ensure(1 <= ms <= most_ms, f"{what}: grpc-retry-pushback-ms {ms} is not within 1..{most_ms}")
    ensure(
        (error.details() or "").endswith(f"retry in {ms} ms"),
        f"{what}: the message {error.details()!r} does not say `retry in {ms} ms`",
    )
    return ms


def kept_open(messages: Iterable, until: threading.Event) -> Iterator:
    """A request stream that sends `messages`, then stays open (sends nothing, does not
    finish) until `until` is set."""
    yield from messages
    until.wait(30)


# ---------------------------------------------------------------------------------------
# Checks: all four RPC kinds


def unary_sign_up_and_lookup(run: Run) -> str:
    request = run.user_request("Ada Lovelace", "ada@example.com")
    user = run.ok("CreateUser without a token (public)", lambda: run.users.CreateUser(request))
    ensure_eq("CreateUser's answer", (user.name, user.email, user.updated_by), (request.name, request.email, ""))
    ensure(user.id >= 1, f"CreateUser answered id {user.id}")
    run.ledger.call(f"{USERS}/CreateUser", grpc.StatusCode.OK, [request], [user])
    lookup = run.users_pb2.GetUserRequest(id=user.id)
    found = run.ok("GetUser with ada's token", lambda: run.users.GetUser(lookup, metadata=ADA))
    ensure_eq("GetUser's answer", found, user)
    run.ledger.call(f"{USERS}/GetUser", grpc.StatusCode.OK, [lookup], [found])
    order = run.order_request("flat white", 2)
    placed = run.ok("PlaceOrder by bob", lambda: run.orders.PlaceOrder(order, metadata=BOB))
    ensure_eq("PlaceOrder's answer", (placed.shop, placed.drink, placed.quantity), ("soho", "flat white", 2))
    ensure(placed.id >= FIRST_PLACED_ID, f"PlaceOrder answered id {placed.id}")
    run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.OK, [order], [placed])
    run.placed_by_bob.append(placed)
    return f"unary: CreateUser (public) -> #{user.id}, GetUser #{user.id} -> the same user, PlaceOrder -> #{placed.id}"


def client_stream_imports(run: Run) -> str:
    records = [run.user_request(f"lister{i:02}", f"lister{i:02}@example.com") for i in range(1, 61)]
    bad = [run.user_request("", "anon@example.com"), run.user_request("Grace", "grace-at-example.com"),
           run.user_request("Edsger", "edsger@"), run.user_request("\t", "")]
    batch = records[:20] + bad[:2] + records[20:] + bad[2:]
    summary = run.ok("ImportUsers", lambda: run.users.ImportUsers(iter(batch), metadata=ADA))
    ensure_eq("ImportUsers (accepted, rejected)", (summary.accepted, summary.rejected), (60, 4))
    run.ledger.call(f"{USERS}/ImportUsers", grpc.StatusCode.OK, batch, [summary])
    Order = run.orders_pb2.Order
    orders = [Order(shop="soho", drink="espresso", quantity=1), Order(shop="soho", drink="", quantity=1),
              Order(shop="soho", drink="cortado", quantity=11), Order(shop="soho", drink="filter", quantity=10),
              Order(shop="soho", drink="mocha", quantity=0)]
    uploaded = run.ok("UploadOrders", lambda: run.orders.UploadOrders(iter(orders), metadata=ADA))
    ensure_eq("UploadOrders (accepted, rejected)", (uploaded.accepted, uploaded.rejected), (2, 3))
    run.ledger.call(f"{ORDERS}/UploadOrders", grpc.StatusCode.OK, orders, [uploaded])
    return "client stream: ImportUsers of 64 records -> 60 accepted, 4 rejected; UploadOrders of 5 -> 2 accepted, 3 rejected"


def server_stream_lists(run: Run) -> str:
    request = run.users_pb2.ListUsersRequest(name_prefix="lister1")
    users = run.ok("ListUsers lister1*", lambda: list(run.users.ListUsers(request, metadata=ADA)))
    names = [u.name for u in users]
    ensure_eq("ListUsers lister1*", names, [f"lister{i}" for i in range(10, 20)])
    ensure_eq("ListUsers in id order", [u.id for u in users], sorted(u.id for u in users))
    run.ledger.call(f"{USERS}/ListUsers", grpc.StatusCode.OK, [request], users)
    return f"server stream: ListUsers name_prefix=lister1 -> exactly lister10..lister19 in id order ({len(users)} users)"


def server_stream_cut_at_max(run: Run) -> str:
    request = run.users_pb2.ListUsersRequest()
    stream = run.users.ListUsers(request, metadata=ADA)
    received = []
    error = run.error_of("ListUsers of everyone", lambda: [received.append(u) for u in stream])
    expect_status("ListUsers past max_messages_out", error, grpc.StatusCode.RESOURCE_EXHAUSTED,
                  f"ListUsers: more than {LIST_USERS_MAX} response messages in one stream")
    ensure_eq("users streamed before the cut", len(received), LIST_USERS_MAX)
    run.ledger.call(f"{USERS}/ListUsers", grpc.StatusCode.RESOURCE_EXHAUSTED, [request], received, rejected="limit")
    return f"server stream: ListUsers of 61+ users cut after {LIST_USERS_MAX}: RESOURCE_EXHAUSTED {error.details()!r}"


def bidi_updates_and_chat(run: Run) -> str:
    everyone = list(run.users.ListUsers(run.users_pb2.ListUsersRequest(name_prefix="lister0"), metadata=ADA))
    run.ledger.call(f"{USERS}/ListUsers", grpc.StatusCode.OK, [run.users_pb2.ListUsersRequest(name_prefix="lister0")], everyone)
    first, second = everyone[0], everyone[1]
    Update = run.users_pb2.UserUpdate
    updates = [Update(id=first.id, name="Renamed"), Update(id=second.id, email="new@example.org")]
    answers = run.ok("UserUpdates", lambda: list(run.users.UserUpdates(iter(updates), metadata=ADA)))
    want = [
        run.users_pb2.User(id=first.id, name="Renamed", email=first.email, updated_by="ada"),
        run.users_pb2.User(id=second.id, name=second.name, email="new@example.org", updated_by="ada"),
    ]
    ensure_eq("UserUpdates' answers", list(answers), want)
    run.ledger.call(f"{USERS}/UserUpdates", grpc.StatusCode.OK, updates, answers)
    lines = [run.chat_line(t) for t in ("a flat white, please", "with oat milk", "thanks")]
    replies = run.ok("Chat", lambda: list(run.orders.Chat(iter(lines), metadata=ADA)))
    ensure_eq("Chat's answers", [(r.__getattribute__("from"), r.text) for r in replies],
              [("barista", f"ada, you said: {line.text}") for line in lines])
    run.ledger.call(f"{ORDERS}/Chat", grpc.StatusCode.OK, lines, replies)
    return "bidi: UserUpdates of 2 -> 2 updated users (updated_by ada); Chat of 3 lines -> 3 answers from the barista"


# ---------------------------------------------------------------------------------------
# Checks: every status the examples produce, with its exact message


def unauthenticated(run: Run) -> str:
    request = run.users_pb2.GetUserRequest(id=1)
    error = run.error_of("GetUser without a token", lambda: run.users.GetUser(request))
    missing = expect_status("GetUser without a token", error, grpc.StatusCode.UNAUTHENTICATED,
                            "missing `authorization: Bearer <token>` metadata")
    run.ledger.call(f"{USERS}/GetUser", grpc.StatusCode.UNAUTHENTICATED, rejected="auth")
    forged = [("authorization", "Bearer forged")]
    error = run.error_of("GetUser with a forged token", lambda: run.users.GetUser(request, metadata=forged))
    invalid = expect_status("GetUser with a forged token", error, grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")
    run.ledger.call(f"{USERS}/GetUser", grpc.StatusCode.UNAUTHENTICATED, rejected="auth")
    stream_request = run.orders_pb2.SubscribeRequest(shop="soho")
    error = run.error_of("Subscribe without a token", lambda: list(run.orders.Subscribe(stream_request)))
    expect_status("Subscribe without a token", error, grpc.StatusCode.UNAUTHENTICATED,
                  "missing `authorization: Bearer <token>` metadata")
    run.ledger.call(f"{ORDERS}/Subscribe", grpc.StatusCode.UNAUTHENTICATED, rejected="auth")
    return f"UNAUTHENTICATED: no token {missing!r}; forged token {invalid!r}; a stream without a token too"


def permission_denied_and_cancel(run: Run) -> str:
    placed = run.placed_by_bob.pop()
    request = run.orders_pb2.CancelOrderRequest(id=placed.id)
    error = run.error_of("CancelOrder by ada", lambda: run.orders.CancelOrder(request, metadata=ADA))
    denied = expect_status("CancelOrder by ada (no barista)", error, grpc.StatusCode.PERMISSION_DENIED,
                           "CancelOrder requires the role `barista`")
    run.ledger.call(f"{ORDERS}/CancelOrder", grpc.StatusCode.PERMISSION_DENIED, rejected="roles")
    done = run.ok("CancelOrder by bob", lambda: run.orders.CancelOrder(request, metadata=BOB))
    ensure_eq("CancelOrder's answer", done.order, placed)
    run.ledger.call(f"{ORDERS}/CancelOrder", grpc.StatusCode.OK, [request], [done])
    error = run.error_of("CancelOrder twice", lambda: run.orders.CancelOrder(request, metadata=BOB))
    twice = expect_status("CancelOrder twice", error, grpc.StatusCode.FAILED_PRECONDITION,
                          f"order #{placed.id} is already cancelled")
    run.ledger.call(f"{ORDERS}/CancelOrder", grpc.StatusCode.FAILED_PRECONDITION, [request])
    return f"PERMISSION_DENIED for ada {denied!r}; OK for bob (a barista), the order back; again: FAILED_PRECONDITION {twice!r}"


def not_found(run: Run) -> str:
    request = run.users_pb2.GetUserRequest(id=987_654)
    error = run.error_of("GetUser of nobody", lambda: run.users.GetUser(request, metadata=ADA))
    user = expect_status("GetUser of nobody", error, grpc.StatusCode.NOT_FOUND, "no user #987654")
    run.ledger.call(f"{USERS}/GetUser", grpc.StatusCode.NOT_FOUND, [request])
    cancel = run.orders_pb2.CancelOrderRequest(id=5)
    error = run.error_of("CancelOrder of no order", lambda: run.orders.CancelOrder(cancel, metadata=BOB))
    order = expect_status("CancelOrder of no order", error, grpc.StatusCode.NOT_FOUND, "no order #5")
    run.ledger.call(f"{ORDERS}/CancelOrder", grpc.StatusCode.NOT_FOUND, [cancel])
    # UserUpdates answers the first update, then ends with NOT_FOUND at the unknown user.
    someone = run.ok("GetUser", lambda: run.users.GetUser(run.users_pb2.GetUserRequest(id=1), metadata=ADA))
    run.ledger.call(f"{USERS}/GetUser", grpc.StatusCode.OK, [run.users_pb2.GetUserRequest(id=1)], [someone])
    Update = run.users_pb2.UserUpdate
    updates = [Update(id=someone.id, name=someone.name), Update(id=77_777, name="Nobody")]
    answers = []
    error = run.error_of("UserUpdates of an unknown user",
                         lambda: [answers.append(a) for a in run.users.UserUpdates(iter(updates), metadata=ADA)])
    stream = expect_status("UserUpdates of an unknown user", error, grpc.StatusCode.NOT_FOUND, "no user #77777")
    ensure_eq("UserUpdates answers before NOT_FOUND", len(answers), 1)
    run.ledger.call(f"{USERS}/UserUpdates", grpc.StatusCode.NOT_FOUND, updates, answers)
    return f"NOT_FOUND: GetUser {user!r}; CancelOrder {order!r}; UserUpdates after 1 answer {stream!r}"


def invalid_argument(run: Run) -> str:
    # The Audit hook refuses an empty name before the handler runs.
    blank = run.user_request("  ", "nobody@example.com")
    error = run.error_of("CreateUser with an empty name", lambda: run.users.CreateUser(blank))
    hook = expect_status("CreateUser with an empty name", error, grpc.StatusCode.INVALID_ARGUMENT, "name must not be empty")
    run.ledger.call(f"{USERS}/CreateUser", grpc.StatusCode.INVALID_ARGUMENT, rejected="hook")
    # The handler refuses a bad email.
    bad = run.user_request("Grace", "grace-at-example.com")
    error = run.error_of("CreateUser with a bad email", lambda: run.users.CreateUser(bad))
    handler = expect_status("CreateUser with a bad email", error, grpc.StatusCode.INVALID_ARGUMENT,
                            "email must look like `name@example.com`")
    run.ledger.call(f"{USERS}/CreateUser", grpc.StatusCode.INVALID_ARGUMENT, [bad])
    # UserUpdates: an update that would make the user invalid.
    update = run.users_pb2.UserUpdate(id=1, email="not-an-email")
    error = run.error_of("UserUpdates to a bad email", lambda: list(run.users.UserUpdates(iter([update]), metadata=ADA)))
    expect_status("UserUpdates to a bad email", error, grpc.StatusCode.INVALID_ARGUMENT, "email must look like `name@example.com`")
    run.ledger.call(f"{USERS}/UserUpdates", grpc.StatusCode.INVALID_ARGUMENT, [update])
    return f"INVALID_ARGUMENT: the hook's {hook!r}; the handler's {handler!r}; UserUpdates' too"


def bad_request_details(run: Run) -> str:
    request = run.order_request("  ", 12)
    error = run.error_of("PlaceOrder of 12 cups of nothing", lambda: run.orders.PlaceOrder(request, metadata=BOB))
    message = expect_status("PlaceOrder of 12 cups of nothing", error, grpc.StatusCode.INVALID_ARGUMENT,
                            "PlaceOrder: 2 invalid fields: drink: must name a drink; quantity: must be 1 to 10")
    status = rpc_status.from_call(error)
    ensure(status is not None, "no grpc-status-details-bin on the INVALID_ARGUMENT")
    ensure_eq("google.rpc.Status code and message", (status.code, status.message), (3, message))
    ensure_eq("google.rpc.Status details", len(status.details), 1)
    detail = status.details[0]
    ensure(detail.Is(error_details_pb2.BadRequest.DESCRIPTOR), f"the detail is a {detail.type_url}, not a BadRequest")
    bad = error_details_pb2.BadRequest()
    detail.Unpack(bad)
    violations = [(v.field, v.description) for v in bad.field_violations]
    ensure_eq("BadRequest field violations", violations,
              [("drink", "must name a drink"), ("quantity", "must be 1 to 10")])
    run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.INVALID_ARGUMENT, rejected="validation")
    return f"INVALID_ARGUMENT {message!r} with google.rpc.BadRequest {violations} (grpc_status.rpc_status.from_call)"


def idempotent_retry(run: Run) -> str:
    key = [("idempotency-key", "till-3-order-0042")]
    request = run.order_request("cortado", 2)
    first, call = run.ok("PlaceOrder with a key", lambda: run.orders.PlaceOrder.with_call(request, metadata=BOB + key))
    replayed = dict(call.initial_metadata()).get("idempotency-replayed")
    ensure_eq("idempotency-replayed on the first answer", replayed, None)
    run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.OK, [request], [first])
    again, call = run.ok("its retry", lambda: run.orders.PlaceOrder.with_call(request, metadata=BOB + key))
    ensure_eq("idempotency-replayed on the retry", dict(call.initial_metadata()).get("idempotency-replayed"), "true")
    ensure_eq("the retry's answer", again, first)
    run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.OK, [request], [again])
    other = run.order_request("cortado", 3)
    error = run.error_of("the same key, another order", lambda: run.orders.PlaceOrder(other, metadata=BOB + key))
    reused = expect_status("the same key, another order", error, grpc.StatusCode.INVALID_ARGUMENT,
                           "PlaceOrder: idempotency key reused with a different request")
    run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.INVALID_ARGUMENT, [other], rejected="idempotency")
    return f"idempotency-key: the retry got order #{first.id} back (idempotency-replayed: true); reused for another order: INVALID_ARGUMENT {reused!r}"


def internal_from_panic(run: Run) -> str:
    request = run.order_request(UNICORN, 1)
    error = run.error_of("PlaceOrder of a unicorn frappuccino", lambda: run.orders.PlaceOrder(request, metadata=BOB))
    message = expect_status("PlaceOrder of a unicorn frappuccino", error, grpc.StatusCode.INTERNAL, "PlaceOrder: internal error")
    run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.INTERNAL, [request], panic=True)
    # The server serves on, on the same connection.
    next_order = run.order_request("espresso", 1)
    placed = run.ok("the next order", lambda: run.orders.PlaceOrder(next_order, metadata=BOB))
    run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.OK, [next_order], [placed])
    return f"INTERNAL {message!r} from a caught panic (grpc_server_panics_total +1); the next order on the same channel: #{placed.id}"


def resource_exhausted_import_over_max_messages(run: Run) -> str:
    batch = [run.user_request(f"bulk{i}", f"bulk{i}@example.com") for i in range(IMPORT_USERS_MAX + 1)]
    error = run.error_of("ImportUsers of 101", lambda: run.users.ImportUsers(iter(batch), metadata=ADA))
    message = expect_status("ImportUsers of 101 records", error, grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"ImportUsers: more than {IMPORT_USERS_MAX} request messages in one stream")
    run.ledger.call(f"{USERS}/ImportUsers", grpc.StatusCode.RESOURCE_EXHAUSTED, batch[:IMPORT_USERS_MAX], rejected="limit")
    listed = list(run.users.ListUsers(run.users_pb2.ListUsersRequest(name_prefix="bulk"), metadata=ADA))
    run.ledger.call(f"{USERS}/ListUsers", grpc.StatusCode.OK, [run.users_pb2.ListUsersRequest(name_prefix="bulk")], listed)
    ensure_eq("users stored by the refused batch", len(listed), 0)
    return f"RESOURCE_EXHAUSTED {message!r}; nothing stored"


def burst_until_refused(run: Run, rpc: str, make_call, make_request, rate: int):
    """Calls until the first refusal (at most 3 x rate calls), tallying each call."""
    admitted = 0
    while True:
        ensure(admitted <= 3 * rate, f"{rpc}: {admitted} calls in a burst, none refused")
        request = make_request(admitted)
        try:
            answer = make_call(request)
        except grpc.RpcError as error:
            return admitted, request, error
        run.ledger.call(rpc, grpc.StatusCode.OK, [request], [answer])
        admitted += 1


def resource_exhausted_call_rate_per_identity(run: Run) -> str:
    rpc = f"{ORDERS}/PlaceOrder"
    admitted, request, error = burst_until_refused(
        run, rpc, lambda r: run.orders.PlaceOrder(r, metadata=ADA), lambda i: run.order_request("espresso", 1 + i % 3),
        PLACE_ORDER_PER_SECOND)
    expect_status("PlaceOrder past ada's rate", error, grpc.StatusCode.RESOURCE_EXHAUSTED, re.compile(
        r"PlaceOrder: more than 10 calls per second per caller \(calls_per_second_per_identity\); retry in \d+ ms"))
    ms = pushback_of("PlaceOrder past ada's rate", error, 1_000 // PLACE_ORDER_PER_SECOND)
    ensure(admitted >= PLACE_ORDER_PER_SECOND, f"only {admitted} of a full bucket of {PLACE_ORDER_PER_SECOND} admitted")
    run.ledger.call(rpc, grpc.StatusCode.RESOURCE_EXHAUSTED, rejected="call_rate")
    # Bob has a bucket of his own; ada is admitted again after the pushback.
    bob = run.order_request("filter", 1)
    run.ledger.call(rpc, grpc.StatusCode.OK, [bob], [run.ok("bob meanwhile", lambda: run.orders.PlaceOrder(bob, metadata=BOB))])
    time.sleep((ms + 5) / 1000)
    again = run.order_request("espresso", 1)
    run.ledger.call(rpc, grpc.StatusCode.OK, [again], [run.ok("ada after the pushback", lambda: run.orders.PlaceOrder(again, metadata=ADA))])
    return f"RESOURCE_EXHAUSTED after {admitted} of ada's orders, grpc-retry-pushback-ms: {ms}; bob served meanwhile; ada again after {ms} ms"


def resource_exhausted_call_rate_per_peer(run: Run) -> str:
    rpc = f"{USERS}/CreateUser"
    # Let the bucket of this address refill from the sign-ups of earlier checks.
    time.sleep(1.1)
    admitted, request, error = burst_until_refused(
        run, rpc, run.users.CreateUser, lambda i: run.user_request("Flood", f"flood{i}@example.com"),
        CREATE_USER_PER_PEER_PER_SECOND)
    expect_status("CreateUser past the per-peer rate", error, grpc.StatusCode.RESOURCE_EXHAUSTED, re.compile(
        r"CreateUser: more than 5 calls per second per peer address \(calls_per_second_per_peer\); retry in \d+ ms"))
    ms = pushback_of("CreateUser past the per-peer rate", error, 1_000 // CREATE_USER_PER_PEER_PER_SECOND)
    ensure(admitted >= CREATE_USER_PER_PEER_PER_SECOND, f"only {admitted} sign-ups admitted from a full bucket")
    run.ledger.call(rpc, grpc.StatusCode.RESOURCE_EXHAUSTED, rejected="call_rate")
    time.sleep((ms + 5) / 1000)
    later = run.user_request("Patient", "patient@example.com")
    run.ledger.call(rpc, grpc.StatusCode.OK, [later], [run.ok("a sign-up after the pushback", lambda: run.users.CreateUser(later))])
    return f"RESOURCE_EXHAUSTED after {admitted} sign-ups from 127.0.0.1, grpc-retry-pushback-ms: {ms}; served again after it"


def resource_exhausted_max_in_flight(run: Run) -> str:
    rpc = f"{ORDERS}/Subscribe"
    feeds = []
    try:
        for i in range(MAX_LIVE_FEEDS):
            request = run.orders_pb2.SubscribeRequest(shop=f"screen {i}")
            feed = run.orders.Subscribe(request, metadata=ADA)
            first = next(feed)  # admitted and streaming
            feeds.append((feed, request, [first]))
        request = run.orders_pb2.SubscribeRequest(shop="one screen too many")
        error = run.error_of("a fifth Subscribe", lambda: next(run.orders.Subscribe(request, metadata=ADA)))
        expect_status("a fifth Subscribe", error, grpc.StatusCode.RESOURCE_EXHAUSTED, re.compile(
            r"Subscribe: too many calls in flight \(max_in_flight = 4\); retry in \d+ ms"))
        ms = pushback_of("a fifth Subscribe", error, 60_000)
        run.ledger.call(rpc, grpc.StatusCode.RESOURCE_EXHAUSTED, rejected="concurrency")
    finally:
        for feed, request, seen in feeds:
            feed.cancel()
            run.ledger.call(rpc, grpc.StatusCode.CANCELLED, [request], seen)
    return f"RESOURCE_EXHAUSTED for a 5th live Subscribe (max_in_flight = 4), grpc-retry-pushback-ms: {ms}"


def deadline_exceeded_idle_chat(run: Run) -> str:
    until = threading.Event()
    line = run.chat_line("hmm, let me think")
    answers = run.orders.Chat(kept_open([line], until), metadata=ADA)
    try:
        first = next(answers)
        error = run.error_of("a silent Chat", lambda: next(answers))
    finally:
        until.set()
    message = expect_status("a Chat silent after one line", error, grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"Chat: no message for {CHAT_IDLE_MS} ms (idle timeout)")
    run.ledger.call(f"{ORDERS}/Chat", grpc.StatusCode.DEADLINE_EXCEEDED, [line], [first], rejected="idle_timeout")
    return f"DEADLINE_EXCEEDED {message!r} for a Chat silent after one line"


def unimplemented(run: Run) -> str:
    """An unknown method of a known service: UNIMPLEMENTED, counted by the edge under
    grpc_method="<unknown>" (with or without a token: it is refused before any policy).
    An unknown service: UNIMPLEMENTED from tonic's router, counted nowhere."""
    for metadata in (ADA, ()):
        call = run.channel.unary_unary(f"/{USERS}/DeleteUser", request_serializer=lambda m: b"",
                                       response_deserializer=lambda b: b)
        error = run.error_of("an unknown method", lambda: call(b"", metadata=metadata))
        expect_status(f"UserService/DeleteUser {'with' if metadata else 'without'} a token", error,
                      grpc.StatusCode.UNIMPLEMENTED, "")
        run.ledger.unknown_method(USERS)
    stream = run.channel.stream_stream(f"/{ORDERS}/Barter", request_serializer=lambda m: m,
                                       response_deserializer=lambda b: b)
    error = run.error_of("an unknown streaming method", lambda: list(stream(iter([b"\x0a\x01x"]), metadata=ADA)))
    expect_status("OrderService/Barter (a stream)", error, grpc.StatusCode.UNIMPLEMENTED, "")
    run.ledger.unknown_method(ORDERS)
    wait_for_metrics(run)
    before = parse_metrics(run.server.metrics_text(), services=None)
    service = run.channel.unary_unary("/users.v2.Nope/Get", request_serializer=lambda m: b"", response_deserializer=lambda b: b)
    error = run.error_of("an unknown service", lambda: service(b"", metadata=ADA))
    expect_status("users.v2.Nope/Get", error, grpc.StatusCode.UNIMPLEMENTED, "")
    time.sleep(0.2)  # what the server would record for it, it would have by now
    after = parse_metrics(run.server.metrics_text(), services=None)
    changed = [f"{show(k)}: {after.get(k, 0) - before.get(k, 0):+g}" for k in sorted(set(before) | set(after))
               if after.get(k, 0) != before.get(k, 0)]
    ensure_eq("grpc_server_* series changed by a call of an unknown service", changed, [])
    return ("UNIMPLEMENTED '' for 3 calls of unknown methods (with and without a token, unary and a stream): "
            "counted under grpc_method=\"<unknown>\", policy=unknown_method; for an unknown service: counted nowhere")


def resource_exhausted_oversize_messages(run: Run) -> str:
    """A request message longer than its RPC's max_message_bytes, or than 4 MiB where the
    RPC declares none, is refused at its length prefix with RESOURCE_EXHAUSTED, counted
    under policy="limit"; the handler never sees it (nor, in a stream, stores what came
    before it)."""
    big = grpc.insecure_channel(run.server.addr, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)])
    try:
        users = run.users_grpc.UserServiceStub(big)
        orders = run.orders_grpc.OrderServiceStub(big)
        # ImportUsers (max_message_bytes = 256): two records, then one of 257 bytes.
        before = [run.user_request(f"oversize{i}", f"oversize{i}@example.com") for i in range(2)]
        batch = before + [sized(run.user_request("", "oversize@example.com"), "name", MAX_RECORD_BYTES + 1)]
        error = run.error_of("ImportUsers with a 257-byte record", lambda: users.ImportUsers(iter(batch), metadata=ADA))
        imported = expect_status("ImportUsers with a 257-byte record", error, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"ImportUsers: request message of {MAX_RECORD_BYTES + 1} bytes exceeds the limit of "
                                 f"{MAX_RECORD_BYTES} bytes, refused at its length prefix")
        run.ledger.call(f"{USERS}/ImportUsers", grpc.StatusCode.RESOURCE_EXHAUSTED, before, rejected="limit")
        listing = run.users_pb2.ListUsersRequest(name_prefix="oversize")
        stored = run.ok("ListUsers oversize*", lambda: list(run.users.ListUsers(listing, metadata=ADA)))
        run.ledger.call(f"{USERS}/ListUsers", grpc.StatusCode.OK, [listing], stored)
        ensure_eq("users stored by the refused batch", stored, [])
        # UploadOrders (max_message_bytes = 512): its first order 513 bytes.
        order = sized(run.orders_pb2.Order(drink="espresso", quantity=1), "shop", UPLOAD_ORDER_MAX_BYTES + 1)
        error = run.error_of("UploadOrders of a 513-byte order", lambda: orders.UploadOrders(iter([order]), metadata=ADA))
        uploaded = expect_status("UploadOrders of a 513-byte order", error, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"UploadOrders: request message of {UPLOAD_ORDER_MAX_BYTES + 1} bytes exceeds the "
                                 f"limit of {UPLOAD_ORDER_MAX_BYTES} bytes, refused at its length prefix")
        run.ledger.call(f"{ORDERS}/UploadOrders", grpc.StatusCode.RESOURCE_EXHAUSTED, rejected="limit")
        # PlaceOrder declares no max_message_bytes: 4 MiB. A 5 MiB order.
        five = sized(run.order_request("espresso", 1, shop=""), "shop", 5 * 1024 * 1024)
        error = run.error_of("PlaceOrder of 5 MiB", lambda: orders.PlaceOrder(five, metadata=BOB))
        placed = expect_status("PlaceOrder of 5 MiB", error, grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"PlaceOrder: request message of {5 * 1024 * 1024} bytes exceeds the limit of "
                               f"{DEFAULT_MAX_MESSAGE_BYTES} bytes, refused at its length prefix")
        run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.RESOURCE_EXHAUSTED, rejected="limit")
        # Served on, on the same connection.
        small = run.order_request("espresso", 1)
        answer = run.ok("PlaceOrder after the refusals", lambda: orders.PlaceOrder(small, metadata=BOB))
        run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.OK, [small], [answer])
        run.placed_by_bob.append(answer)
    finally:
        big.close()
    return (f"RESOURCE_EXHAUSTED at the length prefix: ImportUsers' 3rd record {imported!r} (the 2 before it not "
            f"stored); UploadOrders {uploaded!r}; PlaceOrder {placed!r}; served on after them")


def messages_at_the_limit(run: Run) -> str:
    """A request message of exactly its RPC's max_message_bytes, and one of exactly 4 MiB
    where the RPC declares none, pass."""
    big = grpc.insecure_channel(run.server.addr, options=[("grpc.max_send_message_length", 8 * 1024 * 1024),
                                                         ("grpc.max_receive_message_length", 8 * 1024 * 1024)])
    try:
        users = run.users_grpc.UserServiceStub(big)
        orders = run.orders_grpc.OrderServiceStub(big)
        record = sized(run.user_request("", "limit@example.com"), "name", MAX_RECORD_BYTES)
        summary = run.ok("ImportUsers of a 256-byte record", lambda: users.ImportUsers(iter([record]), metadata=ADA))
        ensure_eq("ImportUsers of a 256-byte record (accepted, rejected)", (summary.accepted, summary.rejected), (1, 0))
        run.ledger.call(f"{USERS}/ImportUsers", grpc.StatusCode.OK, [record], [summary])
        order = sized(run.orders_pb2.Order(drink="espresso", quantity=1), "shop", UPLOAD_ORDER_MAX_BYTES)
        uploaded = run.ok("UploadOrders of a 512-byte order", lambda: orders.UploadOrders(iter([order]), metadata=ADA))
        ensure_eq("UploadOrders of a 512-byte order (accepted, rejected)", (uploaded.accepted, uploaded.rejected), (1, 0))
        run.ledger.call(f"{ORDERS}/UploadOrders", grpc.StatusCode.OK, [order], [uploaded])
        four = sized(run.order_request("espresso", 1, shop=""), "shop", DEFAULT_MAX_MESSAGE_BYTES)
        placed = run.ok("PlaceOrder of 4 MiB", lambda: orders.PlaceOrder(four, metadata=BOB))
        ensure_eq("PlaceOrder of 4 MiB: its answer", (placed.shop, placed.drink, placed.quantity), (four.shop, "espresso", 1))
        run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.OK, [four], [placed])
        run.placed_by_bob.append(placed)
    finally:
        big.close()
    return (f"at the limit: ImportUsers of a {MAX_RECORD_BYTES}-byte record, UploadOrders of a "
            f"{UPLOAD_ORDER_MAX_BYTES}-byte order, PlaceOrder of {DEFAULT_MAX_MESSAGE_BYTES} bytes: OK")


def sized(message, field: str, size: int):
    """`message` with the string `field` padded with "x" until it encodes to exactly
    `size` bytes."""
    setattr(message, field, "")
    short = size - message.ByteSize()
    setattr(message, field, "x" * short)  # the field's tag and length prefix come on top
    while message.ByteSize() > size:
        setattr(message, field, getattr(message, field)[:-1])
    ensure_eq(f"a {type(message).__name__} padded to {size} bytes", message.ByteSize(), size)
    return message


# ---------------------------------------------------------------------------------------
# Checks: gzip, deadlines, cancellation


def gzip_both_ways(run: Run) -> str:
    tap = WireTap(run.server.addr)
    channel = grpc.insecure_channel(tap.addr, compression=grpc.Compression.Gzip)
    try:
        users = run.users_grpc.UserServiceStub(channel)
        orders = run.orders_grpc.OrderServiceStub(channel)
        # grpcio sends a message uncompressed when gzip would not make it smaller: every
        # request here is long and repetitive.
        shop = "gzip " * 40
        order = run.order_request("flat white", 1, shop=shop)
        placed = run.ok("PlaceOrder over gzip", lambda: orders.PlaceOrder(order, metadata=ADA))
        ensure_eq("PlaceOrder over gzip", (placed.shop, placed.drink), (shop, "flat white"))
        run.ledger.call(f"{ORDERS}/PlaceOrder", grpc.StatusCode.OK, [order], [placed])
        records = [run.user_request(f"{shop}{i}", f"gzip{i}@example.com") for i in range(3)]
        summary = run.ok("ImportUsers over gzip", lambda: users.ImportUsers(iter(records), metadata=ADA))
        ensure_eq("ImportUsers over gzip", (summary.accepted, summary.rejected), (3, 0))
        run.ledger.call(f"{USERS}/ImportUsers", grpc.StatusCode.OK, records, [summary])
        listing = run.users_pb2.ListUsersRequest(name_prefix=shop)
        listed = run.ok("ListUsers over gzip", lambda: list(users.ListUsers(listing, metadata=ADA)))
        ensure_eq("ListUsers over gzip", [u.name for u in listed], [r.name for r in records])
        run.ledger.call(f"{USERS}/ListUsers", grpc.StatusCode.OK, [listing], listed)
        lines = [run.chat_line(shop), run.chat_line("and again " * 20)]
        replies = run.ok("Chat over gzip", lambda: list(orders.Chat(iter(lines), metadata=ADA)))
        ensure_eq("Chat over gzip", [r.text for r in replies], [f"ada, you said: {line.text}" for line in lines])
        run.ledger.call(f"{ORDERS}/Chat", grpc.StatusCode.OK, lines, replies)
    finally:
        channel.close()
        tap.close()
    streams = tap.streams()
    # One stream per call, in order; each message's compressed flag, both ways.
    want = [([1], [1]), ([1, 1, 1], [1]), ([1], [1, 1, 1]), ([1, 1], [1, 1])]
    ensure_eq("compressed flags (request's, response's) per call on the wire", list(streams.values()), want)
    return "gzip: PlaceOrder, ImportUsers, ListUsers and Chat sent gzip and were answered in gzip (each message's flag read on the wire)"


def chat_with_deadline(run: Run, timeout: float) -> tuple[grpc.StatusCode, list, list]:
    """A Chat that sends a line every 300 ms and reads every answer, never finishing its
    side: the client's deadline ends it, 100 ms or more after the last line and answer."""
    until = threading.Event()
    sent, received = [], []

    def lines():
        i = 0
        while not until.is_set():
            line = run.chat_line(f"line {i}")
            sent.append(line)
            yield line
            i += 1
            until.wait(0.3)

    try:
        for answer in run.orders.Chat(lines(), metadata=ADA, timeout=timeout):
            received.append(answer)
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
    finally:
        until.set()
    return code, sent, received


def deadline_chats(run: Run, timeouts: list[float], at_once: int) -> str:
    """Chats with these client timeouts, `at_once` at a time; each must end
    DEADLINE_EXCEEDED on the client and be recorded as DeadlineExceeded by the server."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(at_once) as pool:
        results = list(pool.map(lambda t: chat_with_deadline(run, t), timeouts))
    for timeout, (code, sent, received) in zip(timeouts, results):
        ensure_eq(f"a Chat with timeout={timeout}", code, grpc.StatusCode.DEADLINE_EXCEEDED)
        # Lines at 0, 0.3, 0.6, 0.9 (and 1.2 .. 1.8): each answered well before the deadline.
        ensure_eq(f"lines answered in a Chat with timeout={timeout}", len(received), len(sent))
        run.ledger.call(f"{ORDERS}/Chat", grpc.StatusCode.DEADLINE_EXCEEDED, sent, received, rejected="deadline")
    return (f"client deadlines: {timeouts.count(1.0)} Chats with timeout=1.0 and {timeouts.count(2.0)} with 2.0, "
            f"{'all at once' if at_once == len(timeouts) else f'{at_once} at a time'} -> "
            f"DEADLINE_EXCEEDED on the client, DeadlineExceeded x{len(timeouts)} on /metrics")


def subscribe_past_deadlines(run: Run, timeouts: tuple[float, ...]) -> list[tuple[list, list]]:
    """Live Subscribes read to their end with these client timeouts, through a WireTap:
    for each, the orders the client read and those that went on the wire. Each call is
    recorded DEADLINE_EXCEEDED, with what the wire carried as sent."""
    rpc = f"{ORDERS}/Subscribe"
    tap = WireTap(run.server.addr)
    channel = grpc.insecure_channel(tap.addr)
    results = []
    try:
        # Connected first: grpcio's deadline runs from the call, the server's from the
        # request headers, which would otherwise wait for the connection.
        grpc.channel_ready_future(channel).result(timeout=10)
        orders = run.orders_grpc.OrderServiceStub(channel)
        for timeout in timeouts:
            request = run.orders_pb2.SubscribeRequest(shop=f"deadline {timeout}")
            seen = []
            error = run.error_of(f"Subscribe with timeout={timeout}",
                                 lambda: [seen.append(m) for m in orders.Subscribe(request, metadata=ADA, timeout=timeout)])
            # grpcio's own timer, or the server's status when its timer fired first. When
            # the two race, grpc-core can surface the server's grpc-message as it was on
            # the wire (tonic percent-encodes spaces, `Subscribe:%20deadline%20exceeded`):
            # the same status, seen once in CI.
            expect_status(f"Subscribe with timeout={timeout}", error, grpc.StatusCode.DEADLINE_EXCEEDED,
                          re.compile(r"Stream removed \(Deadline Exceeded\)|Subscribe:( |%20)deadline( |%20)exceeded"))
            ensure(seen, f"Subscribe with timeout={timeout}: no order before the deadline")
            time.sleep(0.2)  # the relay has passed on whatever the server wrote
            wire = [run.orders_pb2.Order.FromString(m) for m in tap.responses()[-1]]
            ensure_eq(f"Subscribe with timeout={timeout}: the orders read are the first on the wire",
                      wire[: len(seen)], seen)
            run.ledger.call(rpc, grpc.StatusCode.DEADLINE_EXCEEDED, [request], wire, rejected="deadline")
            results.append((seen, wire))
    finally:
        channel.close()
        tap.close()
    return results


def server_stream_deadlines(run: Run) -> str:
    """A live Subscribe read to its end with timeout=1.05, then 2.05: DEADLINE_EXCEEDED on
    both sides. Orders go out every 100 ms, none near the deadline (a deadline on a tick
    is known_paced_deadline_tie_count): the server counts as sent exactly what the client
    read, which is exactly what went on the wire."""
    counts = []
    for timeout, (seen, wire) in zip((1.05, 2.05), subscribe_past_deadlines(run, (1.05, 2.05))):
        ensure_eq(f"Subscribe with timeout={timeout}: orders on the wire, read by the client", len(wire), len(seen))
        counts.append(len(seen))
    return (f"client deadlines on a live Subscribe: timeout=1.05 after {counts[0]} orders, 2.05 after {counts[1]} -> "
            "DEADLINE_EXCEEDED on the client, DeadlineExceeded x2 on /metrics, sent as read and as on the wire")


def client_deadlines(run: Run) -> str:
    # One at a time: many at once is known_client_deadlines_40_at_once.
    return deadline_chats(run, [1.0, 1.0, 2.0], at_once=1)


def cancel_frees_slots(run: Run) -> str:
    """Live feeds the client cancelled give their max_in_flight slots back."""
    rpc = f"{ORDERS}/Subscribe"
    for round_ in range(3):
        feeds = []
        for i in range(MAX_LIVE_FEEDS):
            request = run.orders_pb2.SubscribeRequest(shop=f"round {round_} screen {i}")
            feed = run.orders.Subscribe(request, metadata=ADA)
            feeds.append((feed, request, [run.ok(f"Subscribe #{i + 1} of round {round_ + 1}", lambda: next(feed))]))
        for feed, request, seen in feeds:
            feed.cancel()
            run.ledger.call(rpc, grpc.StatusCode.CANCELLED, [request], seen)
        wait_for_metrics(run)
    return f"3 rounds of {MAX_LIVE_FEEDS} live Subscribes, cancelled by the client: every round admitted in full"


def paced_stream_cancel_counts(run: Run) -> str:
    """A paced stream (messages_per_second_out) cancelled after N messages counts N sent:
    a message counts once it is handed on, not while the pacer holds it (issue 11's row;
    known failing until the edge)."""
    summary = []
    for rpc, stub, request, n in [
        (f"{ORDERS}/Subscribe", run.orders.Subscribe, run.orders_pb2.SubscribeRequest(shop="soho"), 3),
        (f"{USERS}/ListUsers", run.users.ListUsers, run.users_pb2.ListUsersRequest(name_prefix="lister"), 5),
    ]:
        stream = stub(request, metadata=ADA)
        seen = []
        for message in stream:
            seen.append(message)
            if len(seen) == n:
                stream.cancel()
                break
        ensure_eq(f"{rpc} messages before the cancel", len(seen), n)
        ensure_eq(f"{rpc} after the cancel", stream.code(), grpc.StatusCode.CANCELLED)
        run.ledger.call(rpc, grpc.StatusCode.CANCELLED, [request], seen)
        summary.append(f"{rpc.split('/')[1]} after {n}")
    return f"cancellation: {' and '.join(summary)} messages -> Canceled, messages sent counted as the client saw them"


def bidi_cancel_recorded_cancelled(run: Run) -> str:
    """A Chat its client cancels (request stream still open) is Canceled, not OK: the
    client's reset reaches the handler as CANCELLED, not as the end of its requests
    (known failing, 1 run in 3, until the edge's fix on main, 64a2614)."""
    lines: queue.Queue = queue.Queue()
    chat = run.orders.Chat(iter(lines.get, None), metadata=ADA)
    sent, answers = [], []
    for i in range(3):
        sent.append(run.chat_line(f"question {i}"))
        lines.put(sent[-1])
        answers.append(next(chat))
    chat.cancel()
    lines.put(None)
    ensure_eq("Chat after the cancel", chat.code(), grpc.StatusCode.CANCELLED)
    ensure_eq("Chat's answers", [a.text for a in answers], [f"ada, you said: question {i}" for i in range(3)])
    run.ledger.call(f"{ORDERS}/Chat", grpc.StatusCode.CANCELLED, sent, answers)
    return "cancellation: Chat (still sending) cancelled after 3 answers -> Canceled, 3 messages in and 3 out, as the client saw them"


def client_stream_deadline(run: Run) -> str:
    """A client stream left open past the client's deadline is DEADLINE_EXCEEDED on the
    server, with no summary sent: the client's RST_STREAM(CANCEL) at its deadline no
    longer looks like a finished batch to the handler (known failing until 64a2614:
    tonic 0.14's decoder ended the request stream cleanly, the server recorded OK, 1
    sent)."""
    until = threading.Event()
    Order = run.orders_pb2.Order
    orders = [Order(shop="soho", drink="espresso", quantity=1), Order(shop="soho", drink="filter", quantity=2)]
    try:
        error = run.error_of("UploadOrders left open past timeout=1.0",
                             lambda: run.orders.UploadOrders(kept_open(orders, until), metadata=ADA, timeout=1.0))
    finally:
        until.set()
    ensure_eq("the client's code", error.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
    run.ledger.call(f"{ORDERS}/UploadOrders", grpc.StatusCode.DEADLINE_EXCEEDED, orders, rejected="deadline")
    return "UploadOrders left open past timeout=1.0: DEADLINE_EXCEEDED on both sides, no summary sent"


def cancelled_import_stores_nothing(run: Run) -> str:
    """An ImportUsers cancelled by its client mid-batch stores nothing (users.proto: the
    valid records are stored together at the end, "so a batch cut short stores
    nothing"); known failing until 64a2614, when the handler took the cancelled stream
    for a finished one and stored the partial batch."""
    until = threading.Event()
    batch = [run.user_request(f"halfway{i}", f"halfway{i}@example.com") for i in range(3)]
    future = run.users.ImportUsers.future(kept_open(batch, until), metadata=ADA)
    time.sleep(0.3)  # the three records reach the server; the stream stays open
    future.cancel()
    until.set()
    ensure_eq("the client's code", future.code(), grpc.StatusCode.CANCELLED)
    run.ledger.call(f"{USERS}/ImportUsers", grpc.StatusCode.CANCELLED, batch)
    wait_for_metrics(run)
    request = run.users_pb2.ListUsersRequest(name_prefix="halfway")
    stored = list(run.users.ListUsers(request, metadata=ADA))
    run.ledger.call(f"{USERS}/ListUsers", grpc.StatusCode.OK, [request], stored)
    recorded = run.ledger.compare(run.before, parse_metrics(run.server.metrics_text()))
    ensure(not stored and not recorded, "; ".join(
        [f"users stored by the cancelled ImportUsers: {[u.name for u in stored]}, expected none"] * bool(stored)
        + [f"/metrics: {p}" for p in recorded]))
    return "ImportUsers cancelled by its client after 3 records: CANCELLED on the server, nothing stored"


def wait_for_metrics(run: Run) -> None:
    """Waits until the server has recorded every call of the ledger so far."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        problems = run.ledger.compare(run.before, parse_metrics(run.server.metrics_text()))
        if not problems or time.monotonic() > deadline:
            return
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------
# Checks: health and reflection


def health(run: Run) -> str:
    stub = health_pb2_grpc.HealthStub(run.channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    for service in ("", USERS, ORDERS):
        answer = run.ok(f"Health/Check {service!r}", lambda: stub.Check(health_pb2.HealthCheckRequest(service=service)))
        ensure_eq(f"Health/Check {service!r}", answer.status, serving)
    error = run.error_of("Health/Check of an unknown service",
                         lambda: stub.Check(health_pb2.HealthCheckRequest(service="nope.v1.Nope")))
    message = expect_status("Health/Check of an unknown service", error, grpc.StatusCode.NOT_FOUND, "service not registered")
    # Watch streams the status now, then each change: SERVING, and nothing more while
    # serving (the next read times out).
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
    first = run.ok("Health/Watch ''", lambda: next(watch))
    ensure_eq("Health/Watch '': the first status", first.status, serving)
    error = run.error_of("Health/Watch '' after SERVING", lambda: next(watch))
    ensure_eq("Health/Watch '' after SERVING: the client's deadline", error.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
    # Health is served without a token, and is not one of the example's metered services.
    return (f"health: '' and both services SERVING; an unknown service NOT_FOUND {message!r}; "
            "Watch '' streams SERVING, then nothing until the client's deadline")


class ReflectionV1Database(ProtoReflectionDescriptorDatabase):
    """grpcio-reflection's client speaks v1alpha only; v1's messages are the same on the
    wire, so the same database over grpc.reflection.v1.ServerReflection."""

    def __init__(self, channel: grpc.Channel):
        super().__init__(channel)

        class Stub:
            ServerReflectionInfo = channel.stream_stream(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )

        self._stub = Stub()


def reflection(run: Run) -> str:
    for version, database in (("v1", ReflectionV1Database(run.channel)),
                              ("v1alpha", ProtoReflectionDescriptorDatabase(run.channel))):
        # Each version lists itself (tonic-reflection), not the other one.
        expected_services = sorted([USERS, ORDERS, "grpc.health.v1.Health", f"grpc.reflection.{version}.ServerReflection"])
        services = sorted(database.get_services())
        ensure_eq(f"reflection {version}: services", services, expected_services)
        pool = descriptor_pool.DescriptorPool(database)
        methods = {}
        for full_name in ("coffee.v1.OrderService.PlaceOrder", "coffee.v1.OrderService.Chat",
                          "users.v1.UserService.ListUsers", "users.v1.UserService.ImportUsers"):
            try:
                method = pool.FindMethodByName(full_name)
            except KeyError as error:
                raise Mismatch(f"reflection {version}: cannot resolve {full_name}: {error}") from None
            methods[full_name] = (method.input_type.full_name, method.output_type.full_name,
                                  method.client_streaming, method.server_streaming)
        ensure_eq(f"reflection {version}: methods", methods, {
            "coffee.v1.OrderService.PlaceOrder": ("coffee.v1.PlaceOrderRequest", "coffee.v1.Order", False, False),
            "coffee.v1.OrderService.Chat": ("coffee.v1.ChatMessage", "coffee.v1.ChatMessage", True, True),
            "users.v1.UserService.ListUsers": ("users.v1.ListUsersRequest", "users.v1.User", False, True),
            "users.v1.UserService.ImportUsers": ("users.v1.CreateUserRequest", "users.v1.ImportSummary", True, False),
        })
        orders_file = pool.FindFileContainingSymbol(ORDERS)
        ensure_eq(f"reflection {version}: coffee/v1/orders.proto's imports",
                  [d.name for d in orders_file.dependencies], ["tonic_intercept/v1/options.proto"])
        health_service = pool.FindServiceByName("grpc.health.v1.Health")
        ensure("Check" in health_service.methods_by_name, f"reflection {version}: no grpc.health.v1.Health/Check")
    return "reflection v1 and v1alpha: 4 services listed by each; PlaceOrder, Chat, ListUsers, ImportUsers resolved (types, streaming), options.proto served as a dependency"


# ---------------------------------------------------------------------------------------
# Checks: the directory full, and graceful shutdown (last: they change the server for good)


def directory_full(run: Run) -> str:
    rpc = f"{USERS}/ImportUsers"
    stored = users_stored(run)
    batches = 0
    while stored < MAX_USERS:
        n = min(IMPORT_USERS_MAX, MAX_USERS - stored)
        batch = [run.user_request(f"fill{stored + i}", f"fill{stored + i}@example.com") for i in range(n)]
        summary = run.ok("ImportUsers filling the directory", lambda: run.users.ImportUsers(iter(batch), metadata=ADA))
        ensure_eq("ImportUsers filling the directory", (summary.accepted, summary.rejected), (n, 0))
        run.ledger.call(rpc, grpc.StatusCode.OK, batch, [summary])
        stored += n
        batches += 1
    batch = [run.user_request(f"extra{i}", f"extra{i}@example.com") for i in range(3)]
    error = run.error_of("ImportUsers into a full directory", lambda: run.users.ImportUsers(iter(batch), metadata=ADA))
    imported = expect_status("ImportUsers into a full directory", error, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"the user directory is full: it holds {MAX_USERS} of at most {MAX_USERS} users, 3 more do not fit; nothing was stored")
    run.ledger.call(rpc, grpc.StatusCode.RESOURCE_EXHAUSTED, batch)
    time.sleep(1.1)  # a full per-peer bucket for the sign-up
    request = run.user_request("Late", "late@example.com")
    error = run.error_of("CreateUser into a full directory", lambda: run.users.CreateUser(request))
    created = expect_status("CreateUser into a full directory", error, grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"the user directory is full: it holds at most {MAX_USERS} users")
    run.ledger.call(f"{USERS}/CreateUser", grpc.StatusCode.RESOURCE_EXHAUSTED, [request])
    return f"directory full after {batches} more batches: ImportUsers {imported!r}; CreateUser {created!r}"


def users_stored(run: Run) -> int:
    """How many users the directory holds: ids are 1, 2, ... and none is ever removed, so
    the highest id that GetUser finds (a binary search)."""
    low, high = 0, MAX_USERS + 1  # user #low exists (or low = 0), #high does not
    while high - low > 1:
        middle = (low + high) // 2
        request = run.users_pb2.GetUserRequest(id=middle)
        try:
            user = run.users.GetUser(request, metadata=ADA)
            run.ledger.call(f"{USERS}/GetUser", grpc.StatusCode.OK, [request], [user])
            low = middle
        except grpc.RpcError as error:
            expect_status(f"GetUser #{middle}", error, grpc.StatusCode.NOT_FOUND, f"no user #{middle}")
            run.ledger.call(f"{USERS}/GetUser", grpc.StatusCode.NOT_FOUND, [request])
            high = middle
    return low


def graceful_shutdown(run: Run) -> str:
    """Ctrl-C: a health Watch turns NOT_SERVING, a live Subscribe ends with UNAVAILABLE,
    the client is sent GOAWAY and the listener is closed, so a health Check is refused
    its connection; the server exits 0. No /metrics after this one: the metrics endpoint
    stops with the server."""
    health = health_pb2_grpc.HealthStub(run.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    ensure_eq("Health/Watch '' before Ctrl-C", run.ok("Health/Watch ''", lambda: next(watch)).status,
              health_pb2.HealthCheckResponse.SERVING)
    stream = run.orders.Subscribe(run.orders_pb2.SubscribeRequest(shop="closing time"), metadata=ADA)
    next(stream)
    states: queue.Queue = queue.Queue()
    run.channel.subscribe(states.put)
    run.server.interrupt()
    try:
        status = run.ok("Health/Watch '' at shutdown", lambda: next(watch)).status
    finally:
        watch.cancel()  # an open Watch would hold the drain open
    ensure_eq("Health/Watch '' at shutdown", health_pb2.HealthCheckResponse.ServingStatus.Name(status), "NOT_SERVING")
    error = run.error_of("a live Subscribe at shutdown", lambda: [m for m in stream])
    message = expect_status("a live Subscribe at shutdown", error, grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
    # The GOAWAY takes the channel out of READY; after it a new call needs a new connection.
    deadline = time.monotonic() + 10
    while True:
        ensure(time.monotonic() < deadline, "the channel stayed READY for 10 s after Ctrl-C (no GOAWAY)")
        try:
            if states.get(timeout=0.1) != grpc.ChannelConnectivity.READY:
                break
        except queue.Empty:
            pass
    run.channel.unsubscribe(states.put)
    error = run.error_of("Health/Check after the GOAWAY", lambda: health.Check(health_pb2.HealthCheckRequest(service="")))
    expect_status("Health/Check after the GOAWAY", error, grpc.StatusCode.UNAVAILABLE,
                  re.compile(r"failed to connect to all addresses; last error: \S+ ipv4:127\.0\.0\.1:\d+: "
                             r"Failed to connect to remote host: Connection refused"))
    try:
        code = run.server.proc.wait(10)
    except subprocess.TimeoutExpired:
        raise Mismatch("the server did not exit within 10s of Ctrl-C") from None
    ensure_eq("the server's exit code", code, 0)
    run.server._reader.join(5)  # its stdout, to the end
    ensure_eq("the server's last line", run.server.stdout[-1:], ["stopped"])
    return (f"Ctrl-C: health Watch '' SERVING -> NOT_SERVING; a live Subscribe ended UNAVAILABLE {message!r}; "
            "GOAWAY, then Health/Check UNAVAILABLE (connection refused); the server drained and exited 0")


# ---------------------------------------------------------------------------------------
# Behaviours that are wrong today: run and reported, never failing the run. Each item:
# (check, what is wrong, what the gRPC spec / README expects).


def known_paced_deadline_tie_count(run: Run) -> str:
    """A paced stream whose client deadline falls on a pacer tick must count as sent what
    went on the wire.

    Subscribe with timeout=1.0 and 2.0 (an order every 100 ms, one due at the deadline),
    read through a WireTap: 5 runs in 10 after merging main's client-reset fix (before
    it: 2 in 10, then 5 in 10, and once the client got INTERNAL) the server counted one or two orders more than the wire carried and
    the client read, e.g. 31 sent for 30 on the wire (server log: DeadlineExceeded at
    1003 ms with messages_out=11, 10 on the wire). The order handed on at the deadline
    is counted, then dropped by h2 with the reset stream: counted, never on the wire.
    Away from a tick (server_stream_deadlines, 1.05 and 2.05) it is exact, 10 of 10."""
    results = subscribe_past_deadlines(run, (1.0, 2.0))
    return ("client deadlines on a tick of a live Subscribe: "
            + ", ".join(f"{len(seen)} read, {len(wire)} on the wire" for seen, wire in results)
            + "; sent counted as on the wire")


def known_client_deadlines_40_at_once(run: Run) -> str:
    """40 client deadlines at once (the issue's count) must all be DeadlineExceeded.

    With the edge's clock at the request headers (and main's client-reset fix merged):
    3 of 10 runs passed; the 7 others recorded 1, 2, 2, 4, 5, 7 and 1 of the 40 as
    Canceled, all timeout=1.0 Chats, server durations 980 to 989 ms. A WireTap timing
    the request frames of 3 such runs (conformance-suite probe, not kept) shows the
    client's RST_STREAM 960 to 1003 ms after its HEADERS for timeout=1.0 (1971 to 1975
    for 2.0): the server's durations match the wire, so its clock does start at the
    headers; the reset comes early on the wire itself, more than the edge's 20 ms
    tolerance before the deadline the server derives, when 40 grpcio threads start
    their clocks before their headers go out. One at a time (client_deadlines) it
    passes. Which grpc-timeout those calls sent was not decoded (HPACK)."""
    return deadline_chats(run, [1.0] * 20 + [2.0] * 20, at_once=40)


CHECKS: list[Callable[[Run], str]] = [
    unary_sign_up_and_lookup,
    client_stream_imports,
    server_stream_lists,
    server_stream_cut_at_max,
    bidi_updates_and_chat,
    unauthenticated,
    permission_denied_and_cancel,
    not_found,
    invalid_argument,
    bad_request_details,
    idempotent_retry,
    internal_from_panic,
    resource_exhausted_import_over_max_messages,
    resource_exhausted_call_rate_per_identity,
    resource_exhausted_call_rate_per_peer,
    resource_exhausted_max_in_flight,
    deadline_exceeded_idle_chat,
    unimplemented,
    resource_exhausted_oversize_messages,
    messages_at_the_limit,
    gzip_both_ways,
    client_deadlines,
    server_stream_deadlines,
    cancel_frees_slots,
    paced_stream_cancel_counts,
    bidi_cancel_recorded_cancelled,
    client_stream_deadline,
    cancelled_import_stores_nothing,
    health,
    reflection,
]

KNOWN_FAILING: list[Callable[[Run], str]] = [
    known_paced_deadline_tie_count,
    known_client_deadlines_40_at_once,
]

# Run after KNOWN_FAILING: they change the server for good.
LAST: list[Callable[[Run], str]] = [
    directory_full,
    graceful_shutdown,
]


# ---------------------------------------------------------------------------------------
# The runner


def run_check(run: Run, check: Callable[[Run], str]) -> tuple[str, list[str]]:
    """Runs one check and compares /metrics with its ledger; returns its summary and the
    problems found (empty when it passed)."""
    run.ledger = Ledger()
    run.before = parse_metrics(run.server.metrics_text())
    try:
        summary = check(run)
    except Mismatch as mismatch:
        return check.__name__, [str(mismatch)]
    except grpc.RpcError as error:
        return check.__name__, [f"unexpected {error.code().name}: {error.details()}"]
    if check is graceful_shutdown:
        return summary, []
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        problems = run.ledger.compare(run.before, parse_metrics(run.server.metrics_text()))
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return f"{summary} [/metrics: {run.ledger.summary()}]", [f"/metrics: {p}" for p in problems]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=Path, help="the example server binary (default: build it with cargo)")
    args = parser.parse_args()
    started = time.monotonic()
    binary = args.server or build_server()
    workdir = Path(tempfile.mkdtemp(prefix="tonic-intercept-conformance-"))
    passed, failed, known = 0, 0, []
    server = None
    try:
        compile_protos(workdir)
        server = Server(binary, workdir)
        print(f"example server (pid {server.proc.pid}) on {server.addr}, /metrics on {server.metrics_addr}; grpcio {grpc.__version__}")
        run = Run(server, workdir)
        first = parse_metrics(server.metrics_text())
        # The edge's series for calls of unknown methods exist from start-up, at zero.
        unknown = {k: v for k, v in first.items() if dict(k[1])["grpc_method"] == UNKNOWN_METHOD
                   and k[0] in ("grpc_server_started_total", "grpc_server_rejected_total")}
        ensure_eq("the <unknown> started and rejected series at start-up", sorted(
            (k[0], dict(k[1])["grpc_service"], dict(k[1]).get("policy"), v) for k, v in unknown.items()), [
            ("grpc_server_rejected_total", ORDERS, "unknown_method", 0.0),
            ("grpc_server_rejected_total", USERS, "unknown_method", 0.0),
            ("grpc_server_started_total", ORDERS, None, 0.0),
            ("grpc_server_started_total", USERS, None, 0.0),
        ])
        total = Ledger()

        def account(ledger: Ledger) -> None:
            total.deltas.update(ledger.deltas)

        for check in CHECKS:
            summary, problems = run_check(run, check)
            account(run.ledger)
            if problems:
                failed += 1
                print(f"✘ {check.__name__}:")
                for problem in problems:
                    print(f"    {problem}")
                print(f"  the server's last finished calls:\n{server.finished_calls()}")
                return 1
            passed += 1
            print(f"✔ {summary}")
        # The whole run, scraped before and after: every call counted, call for call.
        problems = total.compare(first, parse_metrics(server.metrics_text()))
        if problems:
            failed += 1
            print("✘ /metrics over the whole run:")
            for problem in problems:
                print(f"    {problem}")
            return 1
        passed += 1
        print(f"✔ /metrics over the whole run: {total.summary()}, each by method, code and policy")
        for check in KNOWN_FAILING:
            summary, problems = run_check(run, check)
            account(run.ledger)
            if problems:
                known.append(check.__name__)
                print(f"⚠ KNOWN FAILING {check.__name__}: {(check.__doc__ or '').split(chr(10))[0].strip()}")
                for problem in problems:
                    print(f"    {problem}")
            else:
                print(f"⚠ KNOWN FAILING {check.__name__} passed this run (move it to CHECKS once it always does): {summary}")
        for check in LAST:
            summary, problems = run_check(run, check)
            if problems:
                failed += 1
                print(f"✘ {check.__name__}:")
                for problem in problems:
                    print(f"    {problem}")
                return 1
            passed += 1
            print(f"✔ {summary}")
        return 0
    except Mismatch as mismatch:
        failed += 1
        print(f"✘ {mismatch}")
        return 1
    finally:
        if server is not None:
            code = server.stop()
            if failed:
                print(f"server exited with {code}; its log: {server.log_path}")
        if not failed:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"known failing, reported above: {len(known)}{' (' + ', '.join(known) + ')' if known else ''}")
        print(f"took {time.monotonic() - started:.1f}s")
        print(f"conformance: {passed} passed, {failed} failed")


if __name__ == "__main__":
    sys.exit(main())
