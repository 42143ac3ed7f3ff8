"""Shared helpers of the real-client scripts in this directory.

Everything here is about keeping a client script harmless: a hard overall
timeout, an environment without the caller's AWS settings or proxies, and a
socket guard that refuses every lookup and connection other than the one
metadata URL under test. In particular nothing can reach 169.254.169.254.
"""

import os
import signal
import socket
import sys
import urllib.parse

# Environment variables that would make a client talk to something other than
# the URL under test, or read the caller's configuration.
_DROP_PREFIXES = ("AWS_", "BOTO_")
_DROP_NAMES = {
    "BOTO_CONFIG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
}


def fail(msg, code=1):
    """Print msg on stderr and exit with code, without a traceback."""
    sys.stderr.write(f"{os.path.basename(sys.argv[0])}: {msg}\n")
    sys.stderr.flush()
    sys.exit(code)


def hard_timeout(seconds):
    """Kill the whole process after seconds, whatever it is doing."""

    def on_alarm(_signum, _frame):
        sys.stderr.write(
            f"{os.path.basename(sys.argv[0])}: timed out after {seconds}s\n"
        )
        sys.stderr.flush()
        os._exit(124)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)


def clean_environ():
    """Drop AWS, boto and proxy settings from os.environ, in place."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith(_DROP_PREFIXES) or upper in _DROP_NAMES:
            del os.environ[name]
    # Whatever the libraries compute, never go through a proxy.
    os.environ["NO_PROXY"] = "*"
    os.environ["no_proxy"] = "*"


def parse_url(url):
    """Check that url is http://host:port[/] and return (host, port)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname or u.path not in ("", "/"):
        fail(f"URL must look like http://127.0.0.1:1338, got {url!r}", 2)
    return u.hostname, u.port or 80


def install_guard(url):
    """Refuse every name lookup and connection except to url's host:port."""
    host, port = parse_url(url)
    real_getaddrinfo = socket.getaddrinfo
    allowed = {
        (sa[0], port)
        for (_f, _t, _p, _c, sa) in real_getaddrinfo(
            host, port, 0, socket.SOCK_STREAM
        )
    }
    allowed_hosts = {host} | {a for (a, _) in allowed}

    def getaddrinfo(h, p, *args, **kwargs):
        if h not in allowed_hosts:
            raise socket.gaierror(
                socket.EAI_NONAME,
                f"netguard: lookup of {h!r} refused (only {host} is allowed)",
            )
        return real_getaddrinfo(h, p, *args, **kwargs)

    def check(addr):
        if not (isinstance(addr, tuple) and (addr[0], addr[1]) in allowed):
            raise ConnectionRefusedError(
                f"netguard: connection to {addr!r} refused "
                f"(only {host}:{port} is allowed)"
            )

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self, addr):
        check(addr)
        return real_connect(self, addr)

    def connect_ex(self, addr):
        check(addr)
        return real_connect_ex(self, addr)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    return host, port
