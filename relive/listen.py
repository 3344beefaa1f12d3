"""Where `relive replay` listens for gdb, and whether it may.

Whoever connects to the replay server can make the replayed program run any code (gdb's
`call`, `set var` in a diversion, `monitor` commands), with the rights of the user relive runs
as. So relive listens on loopback unless told otherwise, refuses another address without an
explicit --allow-remote (and warns loudly with it), and offers a Unix socket that only its
owner may connect to (mode 0600), which is also how `relive replay` talks to the gdb it starts.

The sockets are bound here, before the replay starts, so that a port in use or an address
this machine does not have is one `relive: ...` line at once; the trio server takes them over.
Nothing here knows about traces or gdb's protocol.
"""
from __future__ import annotations

import errno
import getpass
import ipaddress
import os
import socket
import stat
import sys
from pathlib import Path

from tracefile.errors import ReliveError

BACKLOG = 8


class ListenError(ReliveError):
    """relive cannot (or may not) listen where it was asked to."""


def port_number(text: str) -> int:
    """--port's type: a TCP port, 0 for any free one (an argparse error otherwise)."""
    import argparse
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535, or 0 for "
                                         "any free port)")
    return port


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (and ::ffff:127.x); not for 0.0.0.0/:: (every
    address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def tcp_listener(host: str, port: int, *, allow_remote: bool = False) -> socket.socket:
    """A listening TCP socket on host:port; a non-loopback address only with `allow_remote`
    (and a warning on stderr)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise ListenError(f"--host {host}: {getattr(e, 'strerror', None) or e}") from None
    family, _, proto, _, sockaddr = infos[0]
    address = str(sockaddr[0])
    if not is_loopback(address) and not allow_remote:
        shown = host if address == host else f"{host} ({address})"
        raise ListenError(
            f"--host {shown} is reachable from other machines, and whoever connects can run "
            f"code as {_who()} here; add --allow-remote to do it anyway, or use --socket "
            "PATH (or ssh -L) to debug from this machine")
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot listen on {_shown(address, port)}: {_why(e, address)}") \
            from None
    if not is_loopback(address):
        bound = sock.getsockname()[1]
        print(f"relive: WARNING: listening on {_shown(address, bound)}, open to other "
              f"machines: whoever connects can make the replay run any code, as {_who()} on "
              f"{os.uname().nodename}. Use it only on a network you trust.",
              file=sys.stderr, flush=True)
    return sock


def unix_listener(path: Path) -> socket.socket:
    """A listening Unix socket at `path` that only this user can connect to (0600 from the
    start: bound under umask 077). A stale socket left there by a relive that died is
    replaced; anything else at `path` is refused."""
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot listen on {path}: {e.strerror or e}") from None
    finally:
        os.umask(old_umask)
    return sock


def address_text(name: str | tuple[str, int]) -> str:
    """A bound socket's address as shown to users: host:port, or the socket's path."""
    return _shown(name[0], name[1]) if isinstance(name, tuple) else name


def connect_text(name: str | tuple[str, int]) -> str:
    """What a gdb on this machine connects to: loopback for a server on every address."""
    if isinstance(name, tuple) and name[0] in ("0.0.0.0", "::"):
        return f"127.0.0.1:{name[1]}"
    return address_text(name)


def _clear_stale(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ListenError(f"cannot listen on {path}: {e.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise ListenError(f"cannot listen on {path}: it exists and is not a socket of yours; "
                          "remove it or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        os.unlink(path)  # nobody listens: left by a relive that was killed
        return
    except OSError:
        pass
    finally:
        probe.close()
    raise ListenError(f"cannot listen on {path}: another server is listening there")


def _why(error: OSError, address: str) -> str:
    if error.errno == errno.EADDRINUSE:
        return "address already in use (another relive replay? choose another --port, or 0)"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"this machine has no network interface with the address {address}"
    if error.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return error.strerror or str(error)


def _shown(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _who() -> str:
    try:
        return f"user {getpass.getuser()} (uid {os.geteuid()})"
    except (KeyError, OSError):
        return f"uid {os.geteuid()}"
