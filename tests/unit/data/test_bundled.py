"""The bundled sets: scikit-learn's toy-set files, copied into the package and read with
numpy alone. What they hold is pinned by checksums (always), and compared with what
scikit-learn's own loaders return where scikit-learn is installed (the dev extra)."""

from __future__ import annotations

import hashlib
import importlib.util
from importlib.resources import files

import numpy as np
import pytest
from numpy.typing import NDArray

from chainrule.data import BUNDLED, INFO
from chainrule.data.registry import BUNDLED_FILES, _bundled, load_bundled

# sha256 of each file, as copied from scikit-learn 1.9.1 (bundled/NOTICE.md lists them too)
FILE_SHA256 = {
    "digits": "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
    "iris": "f13ffa8fdd56fd8e6c8d16d4081a3fbd3114bcd0aae4256c43205169cd9d1449",
    "breast_cancer": "fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed",
}
# sha256 of the arrays a job trains on (little-endian bytes): float32 X, int64 y
ARRAY_SHA256 = {
    "digits": (
        "9f578524b6cec1fc800cc52dfc87ebe56264983d490aa72a4bd928ba2570ec77",
        "a3c91c262eddcf7ba8f0e37507c30284493c9b20412ffe4af30d536401f7ba21",
    ),
    "iris": (
        "2374923a3acd29a63001946c3c216e2a5581864f01041c86c4b5211ec93885c2",
        "734737f11162991213afc3a96aa5e8823b2d9cdcfb8992df1e85a0bae44b2395",
    ),
    "breast_cancer": (
        "ace340f3a4f8924791b9c5559e8492e9a896f29b3332f303863c6b46256ad45a",
        "1763c0f8cd3f454b9eda72031113884593bb382411c0cd511e3ec6e7ac85cddb",
    ),
}
CLASSES = {
    "digits": tuple("0123456789"),
    "iris": ("setosa", "versicolor", "virginica"),
    "breast_cancer": ("malignant", "benign"),
}
CLASS_COUNTS = {
    "digits": [178, 182, 177, 183, 181, 182, 181, 179, 174, 180],
    "iris": [50, 50, 50],
    "breast_cancer": [212, 357],
}
SKLEARN_LOADERS = {
    "digits": "load_digits",
    "iris": "load_iris",
    "breast_cancer": "load_breast_cancer",
}


def sha256(array: NDArray[np.generic]) -> str:
    little_endian = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return hashlib.sha256(np.ascontiguousarray(little_endian).tobytes()).hexdigest()


def test_every_bundled_set_has_its_file_and_the_notice_names_its_source() -> None:
    assert set(BUNDLED_FILES) == set(BUNDLED) == set(FILE_SHA256)
    notice = (files("chainrule.data") / "bundled" / "NOTICE.md").read_text("utf-8")
    assert "scikit-learn" in notice and "BSD 3-Clause" in notice
    for name, filename in BUNDLED_FILES.items():
        assert filename in notice and FILE_SHA256[name] in notice


@pytest.mark.parametrize("name", BUNDLED)
def test_the_files_are_scikit_learns_byte_for_byte(name: str) -> None:
    data = (files("chainrule.data") / "bundled" / BUNDLED_FILES[name]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == FILE_SHA256[name]


@pytest.mark.parametrize("name", BUNDLED)
def test_the_arrays_have_their_shapes_dtypes_and_checksums(name: str) -> None:
    info = INFO[name]
    bundled = load_bundled(name)
    assert bundled.data.shape == (info.samples, info.features) and bundled.data.dtype == np.float64
    assert bundled.target.shape == (info.samples,) and bundled.target.dtype == np.int64
    assert bundled.classes == CLASSES[name] and len(bundled.classes) == info.classes
    assert np.bincount(bundled.target).tolist() == CLASS_COUNTS[name]
    assert not bundled.data.flags.writeable and not bundled.target.flags.writeable

    X, y = _bundled(name)
    assert X.dtype == np.float32 and y.dtype == np.int64 and y.flags.writeable
    assert (sha256(X), sha256(y)) == ARRAY_SHA256[name]
    if name == "digits":  # 8×8 pixels of 0 to 16, scaled to [0, 1]
        assert X.min() == 0.0 and X.max() == 1.0
        np.testing.assert_array_equal(X * 16, np.round(X * 16))


def test_an_unknown_bundled_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no bundled dataset 'wine'"):
        load_bundled("wine")


@pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None,
    reason="scikit-learn is not installed (the dev extra has it)",
)
@pytest.mark.parametrize("name", BUNDLED)
def test_the_arrays_are_what_scikit_learn_returns(name: str) -> None:
    from sklearn import datasets

    expected = getattr(datasets, SKLEARN_LOADERS[name])()
    bundled = load_bundled(name)
    np.testing.assert_array_equal(bundled.data, expected.data, strict=True)
    np.testing.assert_array_equal(bundled.target, expected.target.astype(np.int64), strict=True)
    assert bundled.classes == tuple(str(c) for c in expected.target_names)

    # what registry.py made of scikit-learn's arrays before the files were bundled
    scale = 16.0 if name == "digits" else 1.0
    X, y = _bundled(name)
    np.testing.assert_array_equal(X, (expected.data / scale).astype(np.float32), strict=True)
    np.testing.assert_array_equal(y, expected.target.astype(np.int64), strict=True)
