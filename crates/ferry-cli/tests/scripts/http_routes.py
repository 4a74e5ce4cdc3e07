"""An HTTP server on loopback with the routes ferry-url's tests need.

Usage: http_routes.py [--tls CERT KEY]. Prints "port N" once listening, then
serves until killed.

Routes:
  /echo                 JSON of method, path, headers and body
  /redirect/CODE?to=P   answers CODE with Location: P (default /echo)
  /chain/N              N redirects in a row, then /echo
  /auth                 401 Basic realm="ferry" unless user:secret is sent
  /status/CODE          CODE with a body "status CODE body"
  /slow                 waits 3 s, then 200
  /large?n=BYTES        a streamed body of BYTES bytes (a repeated pattern)
"""

import base64
import json
import ssl
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD = "Basic " + base64.b64encode(b"user:secret").decode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def send(self, code, body, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def route(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        data = self.body()
        if parts[0] == "echo":
            out = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": data.decode("utf-8", "replace"),
            }
            return self.send(200, json.dumps(out).encode(), [("Content-Type", "application/json")])
        if parts[0] == "redirect":
            return self.send(int(parts[1]), b"", [("Location", query.get("to", "/echo"))])
        if parts[0] == "chain":
            n = int(parts[1])
            target = "/echo" if n <= 1 else "/chain/%d" % (n - 1)
            return self.send(302, b"", [("Location", target)])
        if parts[0] == "auth":
            if self.headers.get("Authorization") == GOOD:
                return self.send(200, b"hello user")
            return self.send(401, b"who are you?", [("WWW-Authenticate", 'Basic realm="ferry"')])
        if parts[0] == "status":
            code = int(parts[1])
            return self.send(code, ("status %d body" % code).encode(), [("X-Status", str(code))])
        if parts[0] == "slow":
            time.sleep(3)
            return self.send(200, b"finally")
        if parts[0] == "large":
            n = int(query.get("n", "0"))
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = bytes(range(256)) * 256
            while n > 0:
                piece = chunk[: min(n, len(chunk))]
                self.wfile.write(piece)
                n -= len(piece)
            return None
        return self.send(404, b"no such route")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = route


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("port %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
