"""Deploy to one Debian/Ubuntu host over SSH, and back up and restore a project's data.

backup.py     one-file backups of the data directory (and Caddy's storage), verified restore
s3.py         backups in an S3 bucket: s3://BUCKET/KEY
render.py     systemd units, the Caddyfile, firewall and upgrade settings
package.py    the release tarball: the project's files and pinned requirements
remote.py     SSH to the host: provisioning, releases, switch-over, rollback
"""
