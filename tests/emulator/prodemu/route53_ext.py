"""Route 53 fidelity: hosted-zone IDs shaped like AWS's.

AWS hosted-zone IDs start with ``Z`` followed by uppercase letters and digits (for example
``Z0712345ABCDEFGHIJKLM``). moto draws all 22 characters at random, so most of its IDs do not
start with ``Z``, and a client that validates the shape (prodaccess's PrivateLinkRoute CRD
requires ``^(/hostedzone/)?Z[0-9A-Z]{1,32}$`` for an existing zone) rejects them. Only the
generator is replaced: moto keys zones by the bare ID and strips ``/hostedzone/`` when it
looks one up, so every path that returns or parses the ID works unchanged.
"""

from __future__ import annotations

import moto.route53.models as route53_models
from moto.moto_api._internal import mock_random as random
from moto.utilities.id_generator import ExistingIds, ResourceIdentifier, Tags, moto_id

# Current AWS IDs are 21 characters long: "Z" and 20 more.
_ID_TAIL = 20


@moto_id
def create_route53_zone_id(
    resource_identifier: ResourceIdentifier,
    existing_ids: ExistingIds = None,
    tags: Tags = None,
) -> str:
    # moto_id keeps custom IDs (the `_custom_id_` tag and registered IDs) working; this body
    # runs only when none applies. Drawn again on a clash, which moto itself never checks.
    taken = set(existing_ids or [])
    while True:
        tail = "".join(random.choice(route53_models.ROUTE53_ID_CHOICE) for _ in range(_ID_TAIL))
        zone_id = "Z" + tail
        if zone_id not in taken:
            return zone_id


def apply() -> None:
    # HostedZoneIdentifier.generate looks the name up in moto's module at call time.
    route53_models.create_route53_zone_id = create_route53_zone_id  # type: ignore[assignment]
