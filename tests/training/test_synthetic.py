import time

import numpy as np
import pytest

from training.data.synthetic import (
    PART,
    SPLITS,
    SUBPART,
    WHOLE,
    SceneConfig,
    SyntheticDataset,
    generate_scene,
    split_seed,
)


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b = generate_scene(123), generate_scene(123)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.levels, b.levels)
    np.testing.assert_array_equal(a.parents, b.parents)
    c = generate_scene(124)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("seed", range(0, 40))
def test_hierarchy_invariants(seed):
    scene = generate_scene(seed)
    h, w = scene.size
    assert max(h, w) == 256 and scene.image.dtype == np.uint8 and scene.image.shape == (h, w, 3)
    assert scene.masks.shape == (len(scene.levels), h, w) and scene.masks.dtype == bool
    for i, (level, parent) in enumerate(zip(scene.levels, scene.parents, strict=True)):
        assert scene.masks[i].sum() >= SceneConfig().min_area
        if level == WHOLE:
            assert parent == -1
            continue
        assert 0 <= parent < len(scene.levels)
        assert scene.levels[parent] < level
        assert scene.objects[parent] == scene.objects[i]
        child, par = scene.masks[i], scene.masks[parent]
        assert not (child & ~par).any(), "a child must lie inside its parent"
        assert child.sum() < par.sum(), "a child must be strictly smaller than its parent"
    # occlusion: visible wholes of different objects never overlap
    wholes = scene.masks[scene.levels == WHOLE]
    assert (wholes.sum(axis=0) <= 1).all()
    # every instance lies inside its object's whole
    for i in range(len(scene.levels)):
        whole = np.flatnonzero((scene.levels == WHOLE) & (scene.objects == scene.objects[i]))
        assert len(whole) == 1 and not (scene.masks[i] & ~scene.masks[whole[0]]).any()


def test_scenes_vary_in_aspect_and_hold_all_three_levels():
    shapes, per_level, ambiguous = set(), {WHOLE: 0, PART: 0, SUBPART: 0}, 0
    for seed in range(60):
        scene = generate_scene(seed)
        shapes.add(scene.size)
        for level in per_level:
            per_level[level] += int((scene.levels == level).sum())
        # a sub-part whose part and whole are both kept: a click there has three valid answers
        for i in np.flatnonzero(scene.levels == SUBPART):
            ancestors = scene.ancestors(int(i))
            ambiguous += int([scene.levels[a] for a in ancestors] == [PART, WHOLE])
    assert len(shapes) > 20
    assert any(h > w for h, w in shapes) and any(w > h for h, w in shapes)
    assert min(per_level.values()) > 60
    assert ambiguous > 60


def test_objects_are_textured_not_flat():
    scene = generate_scene(7)
    stds = [scene.image[m].std(axis=0).mean() for m in scene.masks[scene.levels == WHOLE]]
    assert max(stds) > 5.0


def test_splits_are_disjoint_seed_ranges():
    ranges = sorted(SPLITS.values())
    for (_, stop), (start, _) in zip(ranges, ranges[1:], strict=False):
        assert stop <= start
    train, val, test = (SyntheticDataset(s, 5) for s in ("train", "val", "test"))
    seeds = [{d.seed(i) for i in range(5)} for d in (train, val, test)]
    assert not (seeds[0] & seeds[1]) and not (seeds[0] & seeds[2]) and not (seeds[1] & seeds[2])
    np.testing.assert_array_equal(test[2].image, generate_scene(split_seed("test", 2)).image)


def test_invalid_arguments_raise_value_error():
    with pytest.raises(ValueError, match="unknown split"):
        split_seed("dev", 0)
    with pytest.raises(ValueError, match="outside split"):
        SyntheticDataset("val", 200_000)
    with pytest.raises(ValueError, match="kinds"):
        SceneConfig(kinds=("dragon",))
    with pytest.raises(ValueError, match="unknown SceneConfig keys"):
        SceneConfig.from_dict({"long_sides": 128})
    with pytest.raises(ValueError, match="seed"):
        generate_scene(-1)


def test_config_changes_size():
    scene = generate_scene(3, SceneConfig(long_side=128, min_aspect=1.0))
    assert scene.size == (128, 128)


def test_generation_is_fast():
    start = time.perf_counter()
    for seed in range(30):
        generate_scene(seed)
    per_scene = (time.perf_counter() - start) / 30
    assert per_scene < 0.06  # thousands of scenes per minute on one core (about 15 ms measured)
