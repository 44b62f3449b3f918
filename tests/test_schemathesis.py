"""schemathesis against /openapi.json: requests generated from the document (valid and invalid),
sent to the real app with API keys configured; every answer must match the document, no 5xx,
401 without a valid key, an Allow header on 405s. ``MP_SCHEMATHESIS_EXAMPLES`` raises the count."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings, strategies
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from config.settings import Settings
from media_pipeline.apikeys import hash_key
from media_pipeline.queue import RecordingQueue
from media_pipeline.service import build_services
from media_pipeline.web import create_app

KEY = "schemathesis-key"
EXAMPLES = int(os.environ.get("MP_SCHEMATHESIS_EXAMPLES", "100"))


def _app() -> Any:
    folder = Path(tempfile.mkdtemp(prefix="mp-schemathesis-"))
    # An operator key opens every operation, the console's too; a client app's key is configured beside it.
    app_settings = Settings.from_env({}, data_dir=folder, api_keys=f"app:{hash_key('another-key')}",
                                     operator_keys=f"schemathesis:{hash_key(KEY)}", rate_limit=0)
    return create_app(app_settings, build_services(app_settings, queue=RecordingQueue()))


# tus chunks are raw bytes: schemathesis has no serializer of its own for their media type.
schemathesis.openapi.media_type("application/offset+octet-stream", strategies.binary(max_size=256))
schema = schemathesis.openapi.from_wsgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_documented(case: Any) -> None:
    # Schema-valid bytes are not a valid image (the document cannot say "a JPEG"), so a 415 for
    # them is right: the acceptance check is the one check left out.
    excluded = [positive_data_acceptance]
    if (case.method, case.path) == ("POST", "/v1/tus/"):
        # A tus creation has no body to refuse: schemathesis' negative case for it is an extra,
        # unknown header, which a server behind proxies must accept, not a malformed request.
        excluded.append(negative_data_rejection)
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, excluded_checks=excluded)
