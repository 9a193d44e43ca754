"""Small values passed between assets as Dagster inputs, stored as JSON in the lake's artifacts.

A model checkpoint is too large for an IO manager and already has its home
(``artifacts/models/<version>/model.safetensors``); what an asset hands downstream is its
*reference*: uri, sha256 and the versions it was made from. :class:`LakeJsonIOManager` keeps
that reference at ``artifacts/io/<asset key>.json`` (local or S3, one whole-object write), so
``model_evaluation`` receives the checkpoint as its declared input, not from the event log.
"""

import json

import dagster as dg
from pydantic import Field

from lake.storage import LensStorage


class LakeJsonIOManager(dg.ConfigurableIOManager):
    """JSON-serialisable outputs under the lake's ``artifacts/io/``.

    Example::

        Definitions(assets=[...], resources={"lake_io": LakeJsonIOManager(storage=LensStorage())})
    """

    storage: LensStorage = Field(description="Where the lake and its artifacts live.")

    def _uri(self, key: dg.AssetKey) -> str:
        return self.storage.uri("artifacts", "io", "/".join(key.path) + ".json")

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        data = json.dumps(obj, sort_keys=True, indent=2).encode()
        self.storage.write_bytes(self._uri(context.asset_key), data)

    def load_input(self, context: dg.InputContext) -> dict:
        from botocore.exceptions import ClientError

        uri = self._uri(context.asset_key)
        try:
            return json.loads(self.storage.read_bytes(uri))
        except (FileNotFoundError, ClientError) as e:
            raise dg.Failure(
                f"{uri} is missing: materialise {context.asset_key.to_user_string()} first"
            ) from e
