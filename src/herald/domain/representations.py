"""How an integration is answered over the API and inside Herald's own integration.* events."""

from __future__ import annotations

from typing import Any

from herald.domain.ids import rfc3339
from herald.domain.masking import mask_configuration


def integration_resource(row: dict[str, Any], base_url: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": "integration",
        "name": row["name"],
        "description": row["description"],
        "enabled": row["enabled"],
        "integration_type": row["integration_type"],
        "observes": row["observes"],
        "configuration": mask_configuration(row["configuration"]),
        "links": {"self": f"{base_url}/v2/integrations/{row['id']}"},
        "meta": {"timestamps": {"created_at": rfc3339(row["created_at"]), "updated_at": rfc3339(row["updated_at"])}},
    }
