"""The Caddyfile that serves the sites straight from disk in production.

Caddy (Debian's package) terminates TLS and serves the files it can read
itself, with the same rules as SiteApp: immutable caching for fingerprinted
assets, `no-cache` for the rest, precompressed siblings, SPA routes to
index.html, a real 404 for missing assets. Everything else goes to the app,
which answers the same way: sites kept in a storage bucket (`bucket`), which
have no files on disk, and, on a host set up by `shoestring deploy`, sites
kept in the data directory, which only the app's user may read.
"""

from __future__ import annotations

from pathlib import Path

from shoestring.config import Settings
from shoestring.sites.files import IMMUTABLE, REVALIDATE
from shoestring.sites.publish import site_dir

# The same test as files.is_fingerprinted, in RE2 syntax (no lookaheads): a
# name segment of 8+ letters/digits/_/- that holds both a digit and a letter.
_FINGERPRINT_RE2 = r"[.-]([A-Za-z_-]*[0-9][A-Za-z0-9_-]*[A-Za-z]|[0-9_-]*[A-Za-z][A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]*\.[A-Za-z0-9]+$"


def site_root(settings: Settings, name: str) -> Path:
    site = settings.sites[name]
    return Path(site.root) if site.root else site_dir(settings.data_dir, name) / "current"


def render(settings: Settings, *, address: str, upstream: str) -> str:
    """A Caddyfile site block for `address` (`example.com`, `:8080`) with every site in it.

    Caddy serves a site's file when it exists, with SiteApp's caching and
    precompressed siblings; every other request (app routes, SPA routes,
    missing files, which then get SiteApp's 404 page) goes to the app, so
    the answer is the same with or without Caddy in front.
    """
    lines = [f"{address} {{", "\thandle /_* {", f"\t\treverse_proxy {upstream}", "\t}"]
    for name, site in settings.sites.items():
        if site.bucket:
            continue  # answered by the app, through the catch-all below
        prefix = site.path.rstrip("/")
        indent = "\t"
        if site.host:
            lines += [f"\t@host_{name} host {site.host}", f"\thandle @host_{name} {{"]
            indent = "\t\t"
        lines.append(f"{indent}handle_path {prefix}/* {{" if prefix else f"{indent}handle {{")
        inner = indent + "\t"
        lines += [
            f"{inner}root * {site_root(settings, name)}",
            f"{inner}@exists file {{path}} {{path}}/index.html",
            f"{inner}handle @exists {{",
            f"{inner}\t@immutable path_regexp fingerprint {_FINGERPRINT_RE2}",
            f'{inner}\theader @immutable Cache-Control "{IMMUTABLE}"',
            # Disjoint matchers: two `header` lines on one field do not layer.
            f"{inner}\t@mutable not path_regexp {_FINGERPRINT_RE2}",
            f'{inner}\theader @mutable Cache-Control "{REVALIDATE}"',
            *[f'{inner}\theader {key} "{value}"' for key, value in site.headers.items()],
            # Caddy 2.6 says `Vary` only on a compressed answer; the plain one
            # varies as much (a shared cache must not hand it to every client).
            f"{inner}\t@varies file {{path}}.br {{path}}.gz {{path}}/index.html.br {{path}}/index.html.gz",
            f"{inner}\theader @varies {{",
            f"{inner}\t\tVary Accept-Encoding",
            f"{inner}\t\tdefer",
            f"{inner}\t}}",
            f"{inner}\tfile_server {{",
            f"{inner}\t\tprecompressed br gzip",
            f"{inner}\t}}",
            f"{inner}}}",
            f"{inner}handle {{",
            f"{inner}\trewrite * {{http.request.orig_uri}}",
            f"{inner}\treverse_proxy {upstream}",
            f"{inner}}}",
            f"{indent}}}",
        ]
        if site.host:
            lines.append("\t}")
    lines += ["\thandle {", f"\t\treverse_proxy {upstream}", "\t}", "}"]
    return "\n".join(lines) + "\n"
