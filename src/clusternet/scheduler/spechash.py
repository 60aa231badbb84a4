"""``status.specHash``: a stable hash of a Subscription's spec."""

from __future__ import annotations

import hashlib
import json

from clusternet.apis.apps.v1alpha1 import Subscription


def spec_hash(sub: Subscription) -> int:
    """The first 63 bits of SHA-256 over the spec as canonical JSON (so it fits the int64
    field).  Upstream's FNV over a Go-spew dump cannot be reproduced in Python and need not
    be: consumers only compare hashes for equality (spec §12 item 17)."""
    canonical = json.dumps(sub.spec.to_dict(), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
