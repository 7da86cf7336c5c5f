"""Calls the conformance echo server's gRPC method through a sidecar, on Python's
grpcio (no generated stubs: the answer's one field is read here).

  echo_client.py TARGET AUTHORITY COUNT
      Makes COUNT unary calls of /proto.EchoTestService/Echo to TARGET (a sidecar's
      outbound listener) with AUTHORITY as :authority, and prints one JSON list: per
      call, the Hostname the answer names, or "error: CODE details".
"""

import json
import sys

import grpc


def ident(b):
    return b


def message(raw):
    """Field 1 (a string) of an EchoResponse."""
    if not raw or raw[0] != 0x0A:
        return ""
    length, shift, i = 0, 0, 1
    while True:
        b = raw[i]
        length |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            break
        shift += 7
    return raw[i : i + length].decode()


def hostname(text):
    for line in text.splitlines():
        if line.startswith("Hostname="):
            return line[len("Hostname=") :]
    return ""


def main(target, authority, count):
    opts = [("grpc.enable_http_proxy", 0), ("grpc.default_authority", authority)]
    with grpc.insecure_channel(target, options=opts) as channel:
        echo = channel.unary_unary("/proto.EchoTestService/Echo", ident, ident)
        out = []
        for _ in range(count):
            try:
                out.append(hostname(message(echo(b"", timeout=5))))
            except grpc.RpcError as e:
                out.append(f"error: {e.code().name} {e.details()}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
