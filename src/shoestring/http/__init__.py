"""HTTP plumbing shared by every route: request ids, access log, JSON errors, lifespans."""
