import numpy as np
import pytest

from bioplausible import encoders
from bioplausible.encoders import Block
from bioplausible.errors import UserError


@pytest.mark.parametrize("in_shape", [(28, 28, 1), (32, 32, 3)])
def test_conv3_matches_protocol(in_shape):
    enc = encoders.build("conv3", in_shape, seed=0)
    h, w, c = in_shape
    assert enc.out_shapes == [(h // 2, w // 2, 32), (h // 4, w // 4, 64), (h // 4, w // 4, 128)]
    assert enc.code_dims == [32, 64, 128]
    assert enc.blocks[0].layers[0].params["w"].shape == (3, 3, c, 32)
    x = np.random.default_rng(0).standard_normal((2, *in_shape)).astype(np.float32)
    codes = enc.codes(x)
    assert [z.shape for z in codes] == [(2, 32), (2, 64), (2, 128)]
    assert all(z.dtype == np.float32 for z in codes)


def test_same_seed_same_weights_other_seed_differs():
    a = encoders.build("conv3", (32, 32, 3), seed=3).state_dict()
    b = encoders.build("conv3", (32, 32, 3), seed=3).state_dict()
    c = encoders.build("conv3", (32, 32, 3), seed=4).state_dict()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name,in_shape,dims", [("mlp", (28, 28, 1), [1000, 1000]),
                                                ("vgg6", (32, 32, 3), [64, 64, 128, 128, 256, 256])])
def test_other_recipes(name, in_shape, dims):
    enc = encoders.build(name, in_shape, seed=0)
    assert enc.code_dims == dims
    x = np.zeros((1, *in_shape), np.float32)
    assert [z.shape[1] for z in enc.codes(x)] == dims


def test_block_backward_chains_layers_and_state_roundtrip(rng):
    enc = encoders.build("conv3", (12, 12, 2), seed=1)
    blk = enc.blocks[1]
    x = rng.standard_normal((3, *blk.in_shape)).astype(np.float64)
    for p in blk.params:
        for k in p:
            p[k] = p[k].astype(np.float64)
    y, caches = blk.forward(x)
    g = rng.standard_normal(y.shape)
    dx, grads = blk.backward(caches, g, need_dx=True)
    # finite differences on one weight entry through the whole block
    w = blk.layers[0].params["w"]
    eps = 1e-6
    w[0, 0, 0, 0] += eps
    up = (blk(x) * g).sum()
    w[0, 0, 0, 0] -= 2 * eps
    down = (blk(x) * g).sum()
    w[0, 0, 0, 0] += eps
    assert grads[0]["w"][0, 0, 0, 0] == pytest.approx((up - down) / (2 * eps), rel=1e-5)
    assert dx.shape == x.shape
    _, grads2 = blk.backward(caches, g, need_dx=False)
    np.testing.assert_allclose(grads2[0]["w"], grads[0]["w"])


def test_load_state_dict_is_in_place():
    enc = encoders.build("conv3", (28, 28, 1), seed=0)
    other = encoders.build("conv3", (28, 28, 1), seed=1)
    w = enc.blocks[0].layers[0].params["w"]
    enc.load_state_dict(other.state_dict())
    assert enc.blocks[0].layers[0].params["w"] is w
    np.testing.assert_array_equal(w, other.blocks[0].layers[0].params["w"])


def test_code_backward_is_gap_gradient():
    h_shape = (2, 3, 4, 5)
    dz = np.arange(10, dtype=np.float32).reshape(2, 5)
    dh = Block.code_backward(h_shape, dz)
    assert dh.shape == h_shape
    np.testing.assert_allclose(dh[1, 2, 3], dz[1] / 12)


@pytest.mark.parametrize("recipe,msg", [
    ({"block": [{"layers": [{"type": "conv9d"}]}]}, "unknown layer type 'conv9d'"),
    ({"block": [{"layers": [{"type": "conv2d", "out": 4, "kernal": 3}]}]}, "no option 'kernal'"),
    ({"block": [{"layers": [{"type": "dense", "out": 4}]}]}, "put a flatten layer"),
    ({"blocks": []}, "unknown key 'blocks'"),
])
def test_bad_recipes_say_what_is_wrong(recipe, msg):
    recipe = {"name": "bad", **recipe}
    if "blocks" in recipe:
        recipe["block"] = [{"layers": [{"type": "relu"}]}]
    with pytest.raises(UserError, match=msg):
        encoders.build(recipe, (8, 8, 1), seed=0)


def test_unknown_recipe_lists_available():
    with pytest.raises(UserError, match="available: .*conv3"):
        encoders.build("conv4", (8, 8, 1))


def test_wrong_input_shape_is_a_clear_error():
    enc = encoders.build("conv3", (28, 28, 1), seed=0)
    with pytest.raises(UserError, match=r"built for inputs of shape \(batch, 28, 28, 1\)"):
        enc.codes(np.zeros((2, 32, 32, 3), np.float32))
