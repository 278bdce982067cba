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
from shoestring.sites import by_precedence
from shoestring.sites.files import FINGERPRINT_PATTERN, HTML_SUFFIXES, IMMUTABLE, REVALIDATE
from shoestring.sites.publish import site_dir

# SiteApp's own test (files.py), in a syntax RE2 reads too; HTML is never immutable.
_FINGERPRINTED = [
    f'path_regexp fingerprint "{FINGERPRINT_PATTERN}"',
    "not path " + " ".join(f"*{suffix}" for suffix in HTML_SUFFIXES),
]


def site_root(settings: Settings, name: str) -> Path:
    site = settings.sites[name]
    return Path(site.root) if site.root else site_dir(settings.data_dir, name) / "current"


def render(settings: Settings, *, address: str, upstream: str) -> str:
    """A Caddyfile site block for `address` (`example.com`, `:8080`) with every site in it.

    Caddy serves a site's file when it exists, with SiteApp's caching and
    precompressed siblings; every other request (app routes, SPA routes,
    missing files, which then get SiteApp's 404 page, a directory or the
    site's own path without its slash, which SiteApp redirects) goes to the
    app, so the answer is the same with or without Caddy in front.
    """
    lines = [f"{address} {{", "\thandle /_* {", f"\t\treverse_proxy {upstream}", "\t}"]
    # Named matchers only: Caddy keeps their order (it sorts path matchers
    # first), so the sites are tried in SiteApp's order, `by_precedence`.
    for name, site in by_precedence(settings.sites):
        if site.bucket:
            continue  # answered by the app, through the catch-all below
        prefix = site.path.rstrip("/")
        host = [f"\t\thost {site.host}"] if site.host else []
        if prefix:
            lines += [f"\t@bare_{name} {{", f"\t\tpath {prefix}", *host, "\t}"]
            lines += [f"\thandle @bare_{name} {{", f"\t\treverse_proxy {upstream}", "\t}"]
        lines += [f"\t@site_{name} {{", f"\t\tpath {prefix}/*", *host, "\t}"]
        lines += [f"\thandle @site_{name} {{", *_serve(settings, name, prefix, upstream), "\t}"]
    lines += ["\thandle {", f"\t\treverse_proxy {upstream}", "\t}", "}"]
    return "\n".join(lines) + "\n"


def _serve(settings: Settings, name: str, prefix: str, upstream: str) -> list[str]:
    """The inside of one site's `handle` block: its files, or the app."""
    site = settings.sites[name]
    return [
        *([f"\t\turi strip_prefix {prefix}"] if prefix else []),
        f"\t\troot * {site_root(settings, name)}",
        # `{path}index.html`, not `{path}/index.html`: a directory without its
        # slash goes to the app, which redirects it with the query kept
        # (Caddy 2.6's own redirect drops it). `file {path}` finds files only.
        "\t\t@exists file {path} {path}index.html",
        "\t\thandle @exists {",
        "\t\t\t@immutable {",
        *[f"\t\t\t\t{line}" for line in _FINGERPRINTED],
        "\t\t\t}",
        f'\t\t\theader @immutable Cache-Control "{IMMUTABLE}"',
        # Disjoint matchers: two `header` lines on one field do not layer.
        "\t\t\t@mutable not {",
        *[f"\t\t\t\t{line}" for line in _FINGERPRINTED],
        "\t\t\t}",
        f'\t\t\theader @mutable Cache-Control "{REVALIDATE}"',
        *[f'\t\t\theader {key} "{value}"' for key, value in site.headers.items()],
        # Caddy 2.6 says `Vary` only on a compressed answer; the plain one
        # varies as much (a shared cache must not hand it to every client).
        "\t\t\t@varies file {path}.br {path}.gz {path}index.html.br {path}index.html.gz",
        "\t\t\theader @varies {",
        "\t\t\t\tVary Accept-Encoding",
        "\t\t\t\tdefer",
        "\t\t\t}",
        "\t\t\tfile_server {",
        "\t\t\t\tprecompressed br gzip",
        "\t\t\t}",
        "\t\t}",
        "\t\thandle {",
        "\t\t\trewrite * {http.request.orig_uri}",
        f"\t\t\treverse_proxy {upstream}",
        "\t\t}",
    ]
