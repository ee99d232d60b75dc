#!/usr/bin/env python3
"""A minimal OAuth 2.0 token endpoint for the tests' Dovecot (oauth2 passdb, introspection_mode
= auth): GET with `Authorization: Bearer TOKEN` answers `{"active": true, "username": USER}` when
TOKEN is in the tokens file (a JSON object TOKEN -> USER, re-read on every request, so a test
can revoke or issue tokens while it runs), else `{"active": false}`. Each request's token is appended to the
log file, so a test can see which tokens Dovecot was shown.

Usage: oauth-introspect.py PORT TOKENS_JSON LOG_FILE
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    port, tokens_path, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            header = self.headers.get("Authorization", "")
            token = header[len("Bearer "):] if header.startswith("Bearer ") else ""
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(token + "\n")
            try:
                with open(tokens_path, encoding="utf-8") as f:
                    tokens = json.load(f)
            except (OSError, ValueError):
                tokens = {}
            user = tokens.get(token)
            # An unknown token is inactive (RFC 7662 §2.2: 200 with "active": false).
            if user is None:
                body = {"active": False, "username": ""}
            else:
                body = {"active": True, "username": user}
            status = 200
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # quiet: the log file is the record
            pass

    parent = os.getppid()

    def exit_with_parent() -> None:  # the test process died without stopping us
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
