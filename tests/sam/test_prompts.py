import numpy as np
import pytest

from sam.prompts import PromptSet, pack_prompt_set, pack_prompt_sets


def test_points_without_box_get_one_padding_point():
    coords, labels = pack_prompt_set(PromptSet(np.array([[517.0, 333.0]]), np.array([1])), (333, 517), 256)
    np.testing.assert_allclose(coords, [[256.0, 165.0], [0.0, 0.0]])
    np.testing.assert_array_equal(labels, [1, -1])
    assert coords.dtype == np.float32 and labels.dtype == np.int32


def test_box_becomes_two_labelled_corners_after_the_points():
    prompt = PromptSet(np.array([[10.0, 10.0]]), np.array([0]), box=np.array([0.0, 0.0, 517.0, 333.0]))
    coords, labels = pack_prompt_set(prompt, (333, 517), 256)
    np.testing.assert_array_equal(labels, [0, 2, 3])
    np.testing.assert_allclose(coords[1:], [[0.0, 0.0], [256.0, 165.0]])


def test_box_only_and_mask_only_sets():
    _, labels = pack_prompt_set(PromptSet(box=np.array([1, 2, 3, 4])), (100, 100), 256)
    np.testing.assert_array_equal(labels, [2, 3])
    coords, labels = pack_prompt_set(PromptSet(), (100, 100), 256)
    assert coords.shape == (0, 2) and labels.shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": np.array([[1.0, np.nan]]), "labels": np.array([1])}, "finite"),
        ({"points": np.array([[1.0, 2.0]]), "labels": np.array([2])}, r"labels must be 1 .*got \[2\]"),
        ({"points": np.array([1.0, 2.0]), "labels": np.array([1])}, "Nx2"),
        ({"points": np.array([[1.0, 2.0]]), "labels": np.array([1, 0])}, r"labels must have shape \(1,\)"),
        ({"points": np.array([[1.0, 2.0]])}, "go together"),
        ({"box": np.array([1.0, 2.0, 3.0])}, "4 values"),
        ({"box": np.array([1.0, 2.0, np.inf, 4.0])}, "finite"),
    ],
)
def test_bad_prompts_raise_value_errors_that_say_what_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PromptSet(**kwargs)


def test_batch_needs_equal_packed_lengths():
    a = PromptSet(np.array([[1.0, 2.0]]), np.array([1]))
    b = PromptSet(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([1, 0]))
    packed = pack_prompt_sets([a, a], (100, 100), 256)
    assert packed.coords.shape == (2, 2, 2) and packed.labels.shape == (2, 2)
    with pytest.raises(ValueError, match="same number of points"):
        pack_prompt_sets([a, b], (100, 100), 256)
