"""A gRPC peer for the proxy's tests, on Python's grpcio (no generated stubs: the
methods take and return raw bytes).

  peer.py serve NAME VERSION OUTBOUND [UPSTREAM] [--unavailable]
      Serves lanes.test.Chain on 127.0.0.1, port chosen by the system, and prints
      "listening PORT". Call answers "-> NAME(version: VERSION)" and then, with an
      UPSTREAM (host:port of a mesh Service), the answer of that Service's Call, made
      through the sidecar's outbound listener OUTBOUND with only the my-request-id and
      traceparent metadata passed on. Count streams N messages back; Echo answers each
      message of a bidirectional stream. --unavailable: every call fails UNAVAILABLE.

  peer.py call GATEWAY AUTHORITY METHOD [key=value ...]
      Calls METHOD through GATEWAY with AUTHORITY as :authority and the given metadata,
      and prints one JSON object: code, details, messages, initial and trailing metadata.
      Count sends "5"; Echo sends 1000 messages.
"""

import json
import sys
from concurrent import futures

import grpc

SERVICE = "lanes.test.Chain"
FORWARDED = ("my-request-id", "traceparent")


def ident(b):
    return b


def channel(target, authority):
    opts = [("grpc.enable_http_proxy", 0)]
    if authority:
        opts.append(("grpc.default_authority", authority))
    return grpc.insecure_channel(target, options=opts)


def serve(name, version, outbound, upstream, unavailable):
    me = f"-> {name}(version: {version})"
    up = channel(outbound, upstream) if upstream else None

    def fail_if_unavailable(context):
        if unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{name} {version} is draining")

    def call(request, context):
        fail_if_unavailable(context)
        text = me
        if up is not None:
            md = [(k, v) for k, v in context.invocation_metadata() if k in FORWARDED]
            rpc = up.unary_unary(f"/{SERVICE}/Call", ident, ident)
            try:
                text += rpc(b"", metadata=md, timeout=5).decode()
            except grpc.RpcError as e:
                text += f"[upstream error: {e.code().name} {e.details()}]"
        return text.encode()

    def count(request, context):
        fail_if_unavailable(context)
        for i in range(int(request.decode() or "0")):
            yield f"{name} {version} #{i}".encode()

    def echo(requests, context):
        fail_if_unavailable(context)
        for r in requests:
            yield f"{version}:".encode() + r

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Call": grpc.unary_unary_rpc_method_handler(call, ident, ident),
            "Count": grpc.unary_stream_rpc_method_handler(count, ident, ident),
            "Echo": grpc.stream_stream_rpc_method_handler(echo, ident, ident),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)
    # Ends when the test closes stdin (or dies).
    sys.stdin.read()
    server.stop(0)


def call(gateway, authority, method, metadata):
    ch = channel(gateway, authority)
    path = f"/{SERVICE}/{method}"
    out = {"messages": []}
    try:
        if method == "Call":
            rpc = ch.unary_unary(path, ident, ident)
            resp, c = rpc.with_call(b"", metadata=metadata, timeout=10)
            out["messages"].append(resp.decode())
        elif method == "Count":
            c = ch.unary_stream(path, ident, ident)(b"5", metadata=metadata, timeout=10)
            out["messages"] = [m.decode() for m in c]
        else:
            msgs = (f"m{i}".encode() for i in range(1000))
            c = ch.stream_stream(path, ident, ident)(msgs, metadata=metadata, timeout=20)
            out["messages"] = [m.decode() for m in c]
        out["code"] = c.code().name
        out["details"] = c.details()
    except grpc.RpcError as e:
        c = e
        out["code"] = e.code().name
        out["details"] = e.details()
    out["initial"] = dict(c.initial_metadata() or ())
    out["trailing"] = dict(c.trailing_metadata() or ())
    print(json.dumps(out))


def main(argv):
    if argv[0] == "serve":
        flags = [a for a in argv[1:] if a.startswith("--")]
        args = [a for a in argv[1:] if not a.startswith("--")]
        upstream = args[3] if len(args) > 3 else None
        serve(args[0], args[1], args[2], upstream, "--unavailable" in flags)
    elif argv[0] == "call":
        metadata = [tuple(kv.split("=", 1)) for kv in argv[4:]]
        call(argv[1], argv[2], argv[3], metadata)
    else:
        sys.exit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
