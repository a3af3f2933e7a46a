"""Fed-Heart-Disease loader: FLamby's shapes and split, MD5 pinning, typed errors."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from fl.datasets import load_dataset
from fl.datasets.heart_disease import CENTRES, DATA_DIR, FILE_MD5, load_heart_disease, read_centre_file
from secagg.errors import ConfigError, DecodeError

# FLamby's Fed-Heart-Disease (and research/fed_heart_disease_check.py)
EXPECTED_SIZES = {"Cleveland": (199, 104), "Hungary": (172, 89), "Switzerland": (30, 16), "Long Beach VA": (85, 45)}


@pytest.fixture(scope="module")
def heart():
    return load_heart_disease()


def test_shape_is_740_by_13(heart):
    assert heart.total_rows() == 740
    assert heart.n_features == 13
    assert all(c.x_train.shape[1] == c.x_test.shape[1] == 13 for c in heart.centres)
    assert heart.pooled_x_train.shape == (486, 13)


def test_per_centre_train_test_sizes_match_flamby(heart):
    assert {c.name: (c.n_train, c.n_test) for c in heart.centres} == EXPECTED_SIZES
    assert not heart.simulated


def test_labels_are_binary_and_prevalence_matches(heart):
    prevalence = {}
    for c in heart.centres:
        y = np.concatenate([c.y_train, c.y_test])
        assert set(np.unique(y)) <= {0.0, 1.0}
        prevalence[c.name] = round(float(y.mean()), 2)
    assert prevalence == {"Cleveland": 0.46, "Hungary": 0.38, "Switzerland": 0.98, "Long Beach VA": 0.78}


def test_each_centre_is_normalised_with_its_own_training_statistics(heart):
    for c in heart.centres:
        x = c.x_train.astype(np.float64)
        assert np.allclose(x.mean(axis=0), 0.0, atol=1e-5)
        std = x.std(axis=0, ddof=1)
        # constant columns (e.g. Switzerland's cholesterol) map to 0, others to unit std
        assert np.all(np.isclose(std, 1.0, atol=1e-4) | np.isclose(std, 0.0, atol=1e-6))


def test_unnormalised_features_keep_one_hot_columns(heart):
    raw = load_heart_disease(normalize=False)
    x = np.concatenate([np.concatenate([c.x_train, c.x_test]) for c in raw.centres])
    dummies = x[:, 8:]  # cp levels 2,3,4 and restecg levels 1,2 (first level dropped)
    assert set(np.unique(dummies)) == {0.0, 1.0}
    assert np.all(dummies[:, :3].sum(axis=1) <= 1) and np.all(dummies[:, 3:].sum(axis=1) <= 1)


def test_split_is_stratified_where_flamby_stratifies(heart):
    cleveland = heart.centres[0]
    assert abs(cleveland.y_train.mean() - cleveland.y_test.mean()) < 0.02


def test_pinned_md5_match_the_vendored_files():
    for stem, digest in FILE_MD5.items():
        data = (DATA_DIR / f"processed.{stem}.data").read_bytes()
        assert hashlib.md5(data).hexdigest() == digest
    assert (DATA_DIR / "NOTICE.md").is_file()


@pytest.fixture
def data_copy(tmp_path):
    for stem in CENTRES:
        shutil.copy(DATA_DIR / f"processed.{stem}.data", tmp_path)
    return tmp_path


def test_a_copy_loads_identically(data_copy, heart):
    other = load_heart_disease(data_copy)
    for a, b in zip(heart.centres, other.centres):
        assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)


def test_corrupted_file_raises_decode_error(data_copy):
    path = data_copy / "processed.hungarian.data"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(DecodeError) as info:
        load_heart_disease(data_copy)
    assert info.value.expected_md5 == FILE_MD5["hungarian"]
    assert info.value.got_md5 != FILE_MD5["hungarian"]


def test_truncated_file_raises_decode_error(data_copy):
    path = data_copy / "processed.va.data"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DecodeError):
        load_heart_disease(data_copy)


def test_missing_file_raises_config_error(data_copy):
    (data_copy / "processed.switzerland.data").unlink()
    with pytest.raises(ConfigError, match="not found"):
        load_heart_disease(data_copy)


@pytest.mark.parametrize("content", [b"1,2,3\n", b"a,b,c,d,e,f,g,h,i,j,k,l,m,n\n", b"", b"\xff\xfe\n"])
def test_malformed_content_raises_decode_error(tmp_path, content):
    path = tmp_path / "processed.x.data"
    path.write_bytes(content)
    with pytest.raises(DecodeError):
        read_centre_file(path)


def test_unknown_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="bad options"):
        load_dataset("heart-disease", n_clients=3)
