"""Resources for outside systems (storage lives in ``storage.py``)."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from lake.storage import lensline_home


class FiftyOneResource(dg.ConfigurableResource):
    """The FiftyOne database of this Lensline home (a bundled mongod under ``<home>/fiftyone``).

    The mongod is supervised by :mod:`lake.fiftyone_db` (start, reuse, stop); assets
    call :meth:`connect` before they touch FiftyOne through :mod:`data_quality.fiftyone_sync`.

    Example::

        Definitions(assets=[...], resources={"fiftyone": FiftyOneResource(dataset_name="line-3")})
    """

    dataset_name: str = Field(
        default="lensline", description="FiftyOne dataset the lake is synced to."
    )
    home: str = Field(
        default="", description="Lensline home holding the database; empty: $LENSLINE_HOME."
    )

    def home_path(self) -> Path:
        return Path(self.home).resolve() if self.home else lensline_home()

    def has_database(self) -> bool:
        """Whether this home already has a FiftyOne database (without starting one)."""
        return (self.home_path() / "fiftyone" / "db").is_dir()

    def connect(self) -> None:
        """Start or reuse the home's mongod and point FiftyOne at it (before fiftyone is imported)."""
        from lake.fiftyone_db import configure

        configure(self.home_path())

    def shutdown(self) -> None:
        """Stop the home's mongod if Lensline started it (whichever process did)."""
        from lake.fiftyone_db import shutdown

        shutdown(home=self.home_path())


class PreprocessResource(dg.ConfigurableResource):
    """The one preprocessing contract (:class:`training.preprocess.PreprocessSpec`) for new models.

    Embeddings and training make their inputs with it; every checkpoint records it, and
    evaluation, export and the edge runner read it back from the checkpoint, never from here.

    Example::

        Definitions(assets=[...], resources={"preprocess": PreprocessResource(
            crop="item:112", cameras={"cam2": "fixed:40,20,160,160", "cam3": "full"})})
    """

    image_size: int = Field(default=64, description="Side of the square model input, pixels.")
    crop: str = Field(
        default="item:112",
        description="Default crop: 'item[:side]' (square around the located item), "
        "'fixed:x,y,w,h' (a camera that does not move) or 'full' (whole frame).",
    )
    cameras: dict[str, str] = Field(
        default_factory=dict, description="Per-camera crop overrides, camera_id -> crop."
    )

    def spec(self):
        """The :class:`training.preprocess.PreprocessSpec` these settings describe."""
        from training.preprocess import Crop, PreprocessSpec

        return PreprocessSpec(
            image_size=self.image_size,
            crop=Crop.parse(self.crop),
            cameras={cam: Crop.parse(text) for cam, text in self.cameras.items()},
        )
