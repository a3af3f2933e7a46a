"""Fed-Heart-Disease: the UCI heart-disease data of 4 real hospitals, with
FLamby's preprocessing (Ogier du Terrail et al., NeurIPS 2022).

Steps, exactly as FLamby's ``HeartDiseaseRaw``:

1. read ``processed.<centre>.data`` (14 comma-separated columns, ``?`` = missing);
2. drop columns slope, ca, thal (10, 11, 12), then every row with a missing value;
3. label ``num > 0`` (disease);
4. per centre, a 66/34 train/test split, stratified when both classes have
   more than 2 rows (Switzerland is not), ``random_state=43``;
5. one-hot encode cp and restecg over the pooled rows, dropping the first
   level (pandas ``get_dummies(drop_first=True)`` column order): 740 x 13;
6. normalise each centre with its own training mean and unbiased std (+1e-9);
   the pooled training set uses the pooled training statistics.

The four files are vendored (CC BY 4.0, see ``data/heart_disease/NOTICE.md``)
and their MD5 is checked on every load, the same hashes FLamby checks.

Errors: a missing file is a :class:`~secagg.errors.ConfigError` (the install or
the ``data_dir`` argument is wrong: the caller must fix a path); a file whose
bytes differ from the pinned MD5, or that does not parse, is a
:class:`~secagg.errors.DecodeError` (the bytes are not the data we expect).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError, DecodeError, require_extra

from .federated import CentreData, FederatedDataset, standardise, train_statistics

__all__ = [
    "CENTRES",
    "CENTRE_NAMES",
    "FILE_MD5",
    "N_FEATURES",
    "DATA_DIR",
    "read_centre_file",
    "load_heart_disease",
]

#: file stem -> display name, in FLamby's centre-id order (0..3).
CENTRES: dict[str, str] = {
    "cleveland": "Cleveland",
    "hungarian": "Hungary",
    "switzerland": "Switzerland",
    "va": "Long Beach VA",
}
CENTRE_NAMES: list[str] = list(CENTRES.values())

#: MD5 of the four vendored files; identical to FLamby's downloader checks.
FILE_MD5: dict[str, str] = {
    "cleveland": "2d91a8ff69cfd9616aa47b59d6f843db",
    "hungarian": "22e96bee155b5973568101c93b3705f6",
    "switzerland": "9a87f7577310b3917730d06ba9349e20",
    "va": "4249d03ca7711e84f4444768c9426170",
}

DATA_DIR = Path(__file__).resolve().parent / "data" / "heart_disease"

N_RAW_COLUMNS = 14  # UCI "processed" layout: 13 attributes + num
DROPPED_COLUMNS = (10, 11, 12)  # slope, ca, thal: mostly missing outside Cleveland
LABEL_COLUMN = 13  # num: 0 = no disease, 1..4 = disease
CATEGORICAL_COLUMNS = (2, 6)  # cp (chest pain type), restecg
N_FEATURES = 13  # 8 numeric + 3 cp dummies + 2 restecg dummies
TRAIN_FRACTION = 0.66  # FLamby's split
SPLIT_SEED = 43  # FLamby's random_state
MIN_ROWS_PER_CLASS_TO_STRATIFY = 2  # FLamby stratifies only if every class has > 2 rows
MAX_FILE_BYTES = 1 << 20  # the real files are < 20 KB; refuse to read anything huge


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def read_centre_file(path: Path, *, expected_md5: str | None = None) -> NDArray[np.float64]:
    """Parse one ``processed.*.data`` file to a float64 ``(rows, 14)`` array, NaN = missing.

    Raises ConfigError if the file is missing; DecodeError if its MD5 differs
    from ``expected_md5`` or a line is not 14 numbers/``?``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"heart-disease data file not found: {path}", path=str(path))
    if path.stat().st_size > MAX_FILE_BYTES:
        raise DecodeError(f"{path.name} is larger than {MAX_FILE_BYTES} bytes", path=str(path))
    data = path.read_bytes()
    if expected_md5 is not None:
        got = _md5(data)
        if got != expected_md5:
            raise DecodeError(
                f"{path.name} is corrupted: MD5 {got} does not match the pinned {expected_md5}",
                path=str(path),
                expected_md5=expected_md5,
                got_md5=got,
            )
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{path.name} is not ASCII text", path=str(path)) from exc
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split(",")
        if len(fields) != N_RAW_COLUMNS:
            raise DecodeError(
                f"{path.name}:{lineno}: expected {N_RAW_COLUMNS} fields, got {len(fields)}",
                path=str(path),
                line=lineno,
            )
        try:
            rows.append([np.nan if f == "?" else float(f) for f in fields])
        except ValueError as exc:
            raise DecodeError(f"{path.name}:{lineno}: non-numeric field", path=str(path), line=lineno) from exc
    if not rows:
        raise DecodeError(f"{path.name} has no rows", path=str(path))
    return np.asarray(rows, dtype=np.float64)


def _one_hot_drop_first(column: NDArray[np.float64], levels: NDArray[np.float64]) -> NDArray[np.float64]:
    return (column[:, None] == levels[None, 1:]).astype(np.float64)


def _split(labels: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    model_selection = require_extra("sklearn.model_selection", "fl")
    values, counts = np.unique(labels, return_counts=True)
    stratify = labels if len(values) > 1 and bool(np.all(counts > MIN_ROWS_PER_CLASS_TO_STRATIFY)) else None
    train_idx, test_idx = model_selection.train_test_split(
        np.arange(len(labels)),
        test_size=1.0 - TRAIN_FRACTION,
        train_size=TRAIN_FRACTION,
        random_state=SPLIT_SEED,
        shuffle=True,
        stratify=stratify,
    )
    return np.sort(train_idx), np.sort(test_idx)


def load_heart_disease(data_dir: Path | str | None = None, *, normalize: bool = True) -> FederatedDataset:
    """Load Fed-Heart-Disease: 4 centres, 740 rows x 13 features, FLamby's split.

    ``data_dir`` defaults to the vendored files. Train/test sizes per centre
    are 199/104, 172/89, 30/16, 85/45. Raises ConfigError (missing file) or
    DecodeError (MD5 mismatch, malformed content).
    """
    base = DATA_DIR if data_dir is None else Path(data_dir)
    tables = []
    for stem in CENTRES:
        raw = read_centre_file(base / f"processed.{stem}.data", expected_md5=FILE_MD5[stem])
        kept = np.delete(raw, DROPPED_COLUMNS, axis=1)
        tables.append(kept[~np.isnan(kept).any(axis=1)])
    pooled = np.concatenate(tables)
    # kept columns: 0..9 then num; cp and restecg sit at positions 2 and 6.
    levels = {c: np.unique(pooled[:, c]) for c in CATEGORICAL_COLUMNS}
    numeric = [c for c in range(10) if c not in CATEGORICAL_COLUMNS]

    def features(table: NDArray[np.float64]) -> NDArray[np.float64]:
        parts = [table[:, numeric]] + [_one_hot_drop_first(table[:, c], levels[c]) for c in CATEGORICAL_COLUMNS]
        return np.concatenate(parts, axis=1)

    Array = NDArray[np.floating]
    splits: list[tuple[str, Array, Array, Array, Array]] = []
    for stem, table in zip(CENTRES, tables):
        x, y = features(table), (table[:, -1] != 0).astype(np.float64)
        if x.shape[1] != N_FEATURES:
            raise DecodeError(f"expected {N_FEATURES} features after encoding, got {x.shape[1]}", centre=stem)
        tr, te = _split(y)
        splits.append((stem, x[tr], y[tr], x[te], y[te]))

    centres = []
    for stem, x_tr, y_tr, x_te, y_te in splits:
        if normalize:
            mean, std = train_statistics(x_tr)
            x_tr, x_te = standardise(x_tr, mean, std), standardise(x_te, mean, std)
        centres.append(
            CentreData(
                CENTRES[stem],
                x_tr.astype(np.float32),
                y_tr.astype(np.float32),
                x_te.astype(np.float32),
                y_te.astype(np.float32),
            )
        )
    pooled_x = np.concatenate([s[1] for s in splits])
    pooled_y = np.concatenate([s[2] for s in splits]).astype(np.float32)
    if normalize:
        mean, std = train_statistics(pooled_x)
        pooled_x = standardise(pooled_x, mean, std)
    return FederatedDataset(
        name="heart-disease",
        centres=tuple(centres),
        pooled_x_train=pooled_x.astype(np.float32),
        pooled_y_train=pooled_y,
        simulated=False,
        description="Fed-Heart-Disease (UCI, CC BY 4.0): 4 real hospitals, FLamby preprocessing",
        meta={"source": "UCI heart disease, processed.*.data", "licence": "CC BY 4.0"},
    )
