#!/usr/bin/env python3
"""A Python grpcio server with fault injection, to check the generated Rust client against
gRFC A6 ("gRPC Retry Design") with an implementation that shares no code with tonic.

    python a6_server.py

Serves `a6.v1.A6Service` (tests/proto/a6/v1/a6.proto) on a free 127.0.0.1 port and
prints `PORT <n>` on stdout once it accepts calls. It exits when its stdin closes (so a
test that dies takes it along) or when killed. tests/tests/client_grpcio.rs starts it.

Each request's `Plan` says what each attempt of its call does (`Step`: succeed, fail
Trailers-Only, send response headers then fail, send a message then fail; a status code,
a verbatim `grpc-retry-pushback-ms`, a sleep). Attempts are numbered per call, the call
being the `x-a6-call` request metadata, and every attempt is recorded (its metadata,
`context.time_remaining()`, the values of the request messages it read) for `Report`.

Only grpcio is needed: the handlers are generic (raw bytes in and out), and the few
messages are encoded and decoded here by hand, in protobuf's wire format.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "a6.v1.A6Service"
SUCCEED, TRAILERS_ONLY, HEADERS_THEN_FAIL, MESSAGE_THEN_FAIL = 0, 1, 2, 3
CODES = {code.value[0]: code for code in grpc.StatusCode}

# ---- protobuf wire format: just what a6.proto needs ---------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64: two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def fields(data: bytes):
    """Yields (field number, value) with value an int (varint) or bytes (length-delimited)."""
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(data, i)
        elif wire == 2:
            length, i = read_varint(data, i)
            value, i = data[i : i + length], i + length
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, value


def enc_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value) if value else b""


def enc_bytes(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value if value else b""


def signed32(n: int) -> int:
    n &= (1 << 64) - 1
    return n - (1 << 64) if n >= 1 << 63 else n


def decode_step(data: bytes) -> dict:
    step = {"mode": SUCCEED, "code": 0, "pushback": "", "sleep_ms": 0}
    for number, value in fields(data):
        if number == 1:
            step["mode"] = value
        elif number == 2:
            step["code"] = signed32(value)
        elif number == 3:
            step["pushback"] = value.decode()
        elif number == 4:
            step["sleep_ms"] = value
    return step


def decode_plan(data: bytes) -> dict:
    plan = {"steps": [], "value": 0, "messages": 0}
    for number, value in fields(data):
        if number == 1:
            plan["steps"].append(decode_step(value))
        elif number == 2:
            plan["value"] = value
        elif number == 3:
            plan["messages"] = value
    return plan


def encode_seen(attempt: int, value: int) -> bytes:
    return enc_varint(1, attempt) + enc_varint(2, value)


def encode_attempt(a: dict) -> bytes:
    packed = b"".join(varint(v) for v in a["values"])
    return (
        enc_varint(1, a["number"])
        + enc_bytes(2, a["authorization"].encode())
        + enc_bytes(3, a["request_id"].encode())
        + enc_bytes(4, a["previous_attempts"].encode())
        + enc_bytes(5, a["custom"].encode())
        + enc_varint(6, a["time_remaining_ms"])
        + enc_bytes(7, packed)
    )


# ---- the service --------------------------------------------------------------------


class A6:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, list[dict]] = {}

    def begin(self, context) -> tuple[int, dict]:
        """Records a new attempt of the request's call; returns its number and record."""
        metadata = {key: value for key, value in context.invocation_metadata()}
        remaining = context.time_remaining()
        # grpcio reports no deadline as a very large remaining time.
        remaining_ms = -1 if remaining is None or remaining > 1e9 else int(remaining * 1000)
        with self.lock:
            attempts = self.calls.setdefault(metadata.get("x-a6-call", ""), [])
            record = {
                "number": len(attempts) + 1,
                "authorization": metadata.get("authorization", ""),
                "request_id": metadata.get("x-request-id", ""),
                "previous_attempts": metadata.get("grpc-previous-rpc-attempts", ""),
                "custom": metadata.get("x-a6-custom", ""),
                "time_remaining_ms": remaining_ms,
                "values": [],
            }
            attempts.append(record)
        return record["number"], record

    @staticmethod
    def step(plan: dict, number: int) -> dict:
        steps = plan["steps"]
        return steps[number - 1] if number <= len(steps) else decode_step(b"")

    @staticmethod
    def prepare(step: dict, context) -> None:
        """The step's sleep, and its pushback trailer for the failure to come."""
        if step["sleep_ms"]:
            time.sleep(step["sleep_ms"] / 1000)
        if step["mode"] != SUCCEED and step["pushback"]:
            context.set_trailing_metadata((("grpc-retry-pushback-ms", step["pushback"]),))

    @staticmethod
    def fail(step: dict, number: int, context) -> None:
        if step["mode"] == HEADERS_THEN_FAIL:
            # Custom metadata, so the transport cannot fold the headers into the trailers
            # (gRPC C-core sends Trailers-Only when initial metadata is the default one).
            context.send_initial_metadata((("x-a6-headers", "sent"),))
        context.abort(CODES[step["code"]], f"attempt {number} failed as planned")

    def single(self, plan: dict, number: int, context, value: int) -> bytes:
        step = self.step(plan, number)
        self.prepare(step, context)
        if step["mode"] != SUCCEED:
            self.fail(step, number, context)
        return encode_seen(number, value)

    # Handlers: raw bytes in, raw bytes out.

    def unary(self, request: bytes, context) -> bytes:
        plan = decode_plan(request)
        number, record = self.begin(context)
        record["values"].append(plan["value"])
        return self.single(plan, number, context, plan["value"])

    def watch(self, request: bytes, context):
        plan = decode_plan(request)
        number, record = self.begin(context)
        record["values"].append(plan["value"])
        step = self.step(plan, number)
        self.prepare(step, context)
        if step["mode"] == MESSAGE_THEN_FAIL:
            yield encode_seen(number, 1)
            self.fail(step, number, context)
        if step["mode"] != SUCCEED:
            self.fail(step, number, context)
        for n in range(1, plan["messages"] + 1):
            yield encode_seen(number, n)

    def upload(self, requests, context) -> bytes:
        number, record = self.begin(context)
        plans = [decode_plan(message) for message in requests]
        record["values"].extend(p["value"] for p in plans)
        plan = plans[0] if plans else decode_plan(b"")
        return self.single(plan, number, context, sum(p["value"] for p in plans))

    def chat(self, requests, context):
        number, record = self.begin(context)
        first = next(requests, None)
        plan = decode_plan(first or b"")
        record["values"].append(plan["value"])
        step = self.step(plan, number)
        self.prepare(step, context)
        if step["mode"] == MESSAGE_THEN_FAIL:
            yield encode_seen(number, plan["value"])
            self.fail(step, number, context)
        if step["mode"] != SUCCEED:
            self.fail(step, number, context)
        yield encode_seen(number, plan["value"])
        for message in requests:
            value = decode_plan(message)["value"]
            record["values"].append(value)
            yield encode_seen(number, value)

    def report(self, request: bytes, context) -> bytes:
        call = dict(fields(request)).get(1, b"").decode()
        with self.lock:
            attempts = list(self.calls.get(call, []))
        return b"".join(enc_bytes(1, encode_attempt(a)) for a in attempts)


def main() -> None:
    service = A6()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(service.unary),
        "Plain": grpc.unary_unary_rpc_method_handler(service.unary),
        "Watch": grpc.unary_stream_rpc_method_handler(service.watch),
        "Upload": grpc.stream_unary_rpc_method_handler(service.upload),
        "Chat": grpc.stream_stream_rpc_method_handler(service.chat),
        "Report": grpc.unary_unary_rpc_method_handler(service.report),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    # Ends with the test: its end closes our stdin.
    sys.stdin.read()
    server.stop(grace=None)


if __name__ == "__main__":
    main()
