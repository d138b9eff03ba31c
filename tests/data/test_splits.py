import json

import pytest

from medgan.data.base import DataError
from medgan.data.splits import split_path, subject_split


def test_no_subject_in_two_splits_and_all_assigned(tmp_path):
    subjects = [f"s-{i:03d}" for i in range(37)]
    mapping = subject_split(subjects, fractions={"train": 0.7, "val": 0.1, "test": 0.2}, seed=3,
                            path=tmp_path / "splits.json")
    assert set(mapping) == set(subjects)  # a dict: every subject has exactly one split
    counts = {name: sum(v == name for v in mapping.values()) for name in ("train", "val", "test")}
    assert counts == {"train": 26, "val": 4, "test": 7}


def test_split_is_reused_and_seeded(tmp_path):
    path = tmp_path / "splits.json"
    subjects = [f"s-{i}" for i in range(20)]
    first = subject_split(subjects, fractions=(0.8, 0.1, 0.1), seed=0, path=path)
    stored = json.loads(path.read_text())
    assert stored["mapping"] == first
    # same inputs -> read back unchanged even if the file was edited by hand (it is the record)
    stored["mapping"][subjects[0]] = "custom"
    path.write_text(json.dumps(stored))
    assert subject_split(subjects, fractions=(0.8, 0.1, 0.1), seed=0, path=path)[subjects[0]] == "custom"
    other = subject_split(subjects, fractions=(0.8, 0.1, 0.1), seed=1, path=tmp_path / "other.json")
    assert other != first


def test_small_split_gets_a_subject_and_bad_fractions_fail(tmp_path):
    mapping = subject_split(["a", "b", "c"], fractions=(0.8, 0.1, 0.1), seed=0, path=tmp_path / "s.json")
    assert sorted(mapping.values()) == ["test", "train", "val"]
    with pytest.raises(DataError, match="sum to 1"):
        subject_split(["a"], fractions=(0.5, 0.1), seed=0, path=tmp_path / "t.json")


def test_split_path_names_seed_and_fractions(tmp_path):
    assert split_path(tmp_path, fractions=(0.8, 0.1, 0.1), seed=2).name == "splits_seed2_train80-val10-test10.json"
