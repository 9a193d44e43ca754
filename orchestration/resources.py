"""Resources for outside systems (storage lives in ``storage.py``)."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from orchestration.storage import lensline_home


class FiftyOneResource(dg.ConfigurableResource):
    """The FiftyOne database of this Lensline home (a bundled mongod under ``<home>/fiftyone``).

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
        from data_quality.fiftyone_sync import configure

        configure(self.home_path())
