"""Arms matched by value through one index (studies.analysis.comparison._arm_key): two arms'
values share a key exactly when they match both ways, as the spec's checks match them."""

from __future__ import annotations

import itertools

from studies.analysis.comparison import _arm_key
from studies.config.space import matches

VALUES = [
    0, 0.0, 1, 1.0, True, False, 1.2, "1", "sgd", None, [0, 1], [0.0, 1.0], [1, 0],
    {"name": "sgd"}, {"name": "sgd", "lr": 0.1}, {"lr": 0.1, "name": "sgd"},
    {"name": "sgd", "lr": 0.10000001}, {"name": {"inner": 0}}, {"name": {"inner": 0.0}},
]  # fmt: skip


def test_equal_keys_exactly_when_the_values_match_both_ways():
    for first, second in itertools.product(VALUES, repeat=2):
        both = matches(first, second) and matches(second, first)
        assert (_arm_key(first) == _arm_key(second)) == both, (first, second)


def test_an_arm_is_a_mapping_of_paths_and_its_key_ignores_their_order():
    one = {"optimizer.lr": 0.1, "enorm.c": 0}
    assert _arm_key(one) == _arm_key({"enorm.c": 0.0, "optimizer.lr": 0.1})
    assert _arm_key(one) != _arm_key({"optimizer.lr": 0.1})
    assert hash(_arm_key(one)) == hash(_arm_key(dict(reversed(list(one.items())))))
