"""The built model repository served by a real tritonserver (Python backend, CPU configs)."""

import json

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

import sam
from sam.export.model_repository import build_model_repository
from server.backend.local_triton import LocalTriton

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(tiny_model.state_dict(), ckpt)
    repo = build_model_repository("tiny", tmp_path_factory.mktemp("repo"), checkpoint=ckpt)
    with LocalTriton(repo, model_config_name="cpu") as triton:
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        yield repo, client
        client.close()


def _infer(client, model, arrays, outputs):
    inputs = []
    for name, array in arrays.items():
        dtype = {np.uint8: "UINT8", np.float32: "FP32", np.int32: "INT32"}[array.dtype.type]
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(model, inputs, outputs=[grpcclient.InferRequestedOutput(o) for o in outputs])
    return [result.as_numpy(o) for o in outputs]


def test_models_are_ready_and_describe_the_model(served):
    repo, client = served
    assert client.is_model_ready("sam_encoder") and client.is_model_ready("sam_decoder")
    params = client.get_model_config("sam_encoder", as_json=True)["config"]["parameters"]
    assert params["sam_image_size"]["string_value"] == "256"
    assert json.loads(params["sam_config"]["string_value"])["encoder_embed_dim"] == 64
    assert json.loads((repo / "export.json").read_text())["decoder_max_abs_diff"] <= 1e-5


def test_triton_encoder_and_decoder_match_the_eager_model(served, tiny_model):
    _, client = served
    image = np.random.default_rng(3).integers(0, 256, (1, 190, 256, 3), dtype=np.uint8)
    (emb,) = _infer(client, "sam_encoder", {"image": image}, ["image_embeddings__0"])
    with torch.no_grad():
        expected = tiny_model.embed(torch.from_numpy(image).permute(0, 3, 1, 2)).numpy()
    assert emb.shape == (1, 256, 16, 16)
    np.testing.assert_allclose(emb, expected, atol=1e-5)

    coords = np.array([[[40.0, 50.0], [0.0, 0.0]], [[100.0, 20.0], [0.0, 0.0]]], np.float32)
    labels = np.array([[1, -1], [0, -1]], np.int32)
    mask = np.random.default_rng(4).standard_normal((2, 1, 64, 64)).astype(np.float32)
    has_mask = np.array([0.0, 1.0], np.float32)
    low, iou = _infer(client, "sam_decoder", {
        "image_embeddings": emb, "point_coords": coords, "point_labels": labels,
        "mask_input": mask, "has_mask_input": has_mask,
    }, ["low_res_masks__0", "iou_predictions__1"])
    with torch.no_grad():
        ref_low, ref_iou = tiny_model.decode(torch.from_numpy(emb), torch.from_numpy(coords),
                                             torch.from_numpy(labels), torch.from_numpy(mask),
                                             torch.from_numpy(has_mask))
    assert low.shape == (2, 4, 64, 64) and iou.shape == (2, 4)
    np.testing.assert_allclose(low, ref_low.numpy(), atol=1e-4)
    np.testing.assert_allclose(iou, ref_iou.numpy(), atol=1e-5)


def test_a_bad_request_gets_an_error_not_a_crash(served):
    _, client = served
    with pytest.raises(Exception, match="long side is 256 px; got 300x10"):
        _infer(client, "sam_encoder", {"image": np.zeros((1, 300, 10, 3), np.uint8)}, ["image_embeddings__0"])
    (emb,) = _infer(client, "sam_encoder", {"image": np.zeros((1, 256, 10, 3), np.uint8)},
                    ["image_embeddings__0"])  # still serving
    assert emb.shape == (1, 256, 16, 16)


def test_predictor_and_triton_agree_through_the_shared_transforms(served, tiny_model):
    """Masks computed from Triton's outputs with sam.transforms equal the in-process Predictor's."""
    _, client = served
    image = np.random.default_rng(5).integers(0, 256, (75, 101, 3), dtype=np.uint8)
    predictor = sam.Predictor(tiny_model)
    predictor.set_image(image)
    masks, iou, low = predictor.predict(np.array([[50, 30]]), np.array([1]))
    resized = sam.transforms.resize_image(image, 256)[None]
    (emb,) = _infer(client, "sam_encoder", {"image": resized}, ["image_embeddings__0"])
    coords, labels = sam.prompts.pack_prompt_set(
        sam.prompts.PromptSet(np.array([[50.0, 30.0]]), np.array([1])), (75, 101), 256)
    t_low, t_iou = _infer(client, "sam_decoder", {
        "image_embeddings": emb, "point_coords": coords[None], "point_labels": labels[None],
        "mask_input": np.zeros((1, 1, 64, 64), np.float32), "has_mask_input": np.zeros(1, np.float32),
    }, ["low_res_masks__0", "iou_predictions__1"])
    np.testing.assert_allclose(t_iou[0, 1:], iou, atol=1e-5)
    logits = sam.transforms.upscale_logits(t_low[0, 1:], predictor.input_size, (75, 101), 256)
    decided = np.abs(logits) > 1e-2
    np.testing.assert_array_equal((logits > 0)[decided], masks[decided])


def test_random_weights_are_fixed_by_the_seed(tmp_path):
    a = build_model_repository("tiny", tmp_path / "a", seed=3)
    b = build_model_repository("tiny", tmp_path / "b", seed=3)
    c = build_model_repository("tiny", tmp_path / "c", seed=4)
    state = [torch.jit.load(str(r / "sam_decoder" / "1" / "model.pt")).state_dict() for r in (a, b, c)]
    key = "model.mask_decoder.iou_token.weight"
    assert torch.equal(state[0][key], state[1][key]) and not torch.equal(state[0][key], state[2][key])
    versions = [json.loads((r / "export.json").read_text())["sam_model_version"] for r in (a, b, c)]
    assert versions[0] == versions[1] != versions[2]
