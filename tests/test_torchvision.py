"""torchvision networks (``tv:NAME``) on grey 28x28 images: built as the stock architecture, exported as built
(builder name and arguments recorded, never guessed), reloaded by dd_hub.load and by plain torchvision."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import dd_hub
from dd_hub.errors import DDHubError
from dd_hub.models import directory
from dd_hub.models.directory import check_export, save_model
from dd_hub.models.normalized import NormalizedModel
from dd_hub.training.loop import freeze_batchnorm

from helpers import run_python

MNIST = dict(num_classes=10, input_size=(1, 28, 28), mean=(0.1307,), std=(0.3081,))

#: a new user's process: plain torchvision, the config's builder and arguments, the weights as they are
PLAIN_TORCHVISION = """
import json, sys, torch, torchvision
from safetensors.torch import load_file, save_file
config = json.load(open(sys.argv[1] + "/config.json"))
name = config["architecture"].removeprefix("tv:")
model = torchvision.models.get_model(name, num_classes=config["num_classes"], **config.get("model_args", {}))
model.load_state_dict(load_file(sys.argv[1] + "/model.safetensors"))
cfg, x = config["pretrained_cfg"], load_file(sys.argv[2])["x"]
mean, std = torch.tensor(cfg["mean"]).view(-1, 1, 1), torch.tensor(cfg["std"]).view(-1, 1, 1)
with torch.no_grad():
    logits = model.eval()((x.expand(-1, 3, -1, -1) - mean) / std)
assert "dd_hub" not in sys.modules
save_file({"logits": logits}, sys.argv[3])
"""


def _trained_like(name: str) -> NormalizedModel:
    """``tv:NAME`` for MNIST after what training does to it: BatchNorm frozen (other layers), weights changed."""
    torch.manual_seed(0)
    model = dd_hub.create_model(name, **MNIST)
    freeze_batchnorm(model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return model.eval()


def test_a_torchvision_network_without_twin_exports_as_built_and_loads_in_plain_torchvision(tmp_path):
    model = _trained_like("tv:mobilenet_v3_small")   # hard-sigmoid swapped, BatchNorm frozen
    check_export(model, (1, 28, 28))
    save_model(model, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architecture"] == "tv:mobilenet_v3_small" and config["num_classes"] == 10
    assert config["pretrained_cfg"]["input_size"] == [3, 28, 28]
    assert config["pretrained_cfg"]["mean"] == pytest.approx([0.1307] * 3)  # the grey statistics on each channel
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(dd_hub.load(tmp_path / "m")(x), expected, rtol=1e-5, atol=1e-5)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    done = run_python(PLAIN_TORCHVISION, None, str(tmp_path / "m"), str(tmp_path / "x.safetensors"),
                      str(tmp_path / "logits.safetensors"))
    assert done.returncode == 0, done.stderr[-3000:]
    torch.testing.assert_close(load_file(str(tmp_path / "logits.safetensors"))["logits"], expected,
                               rtol=1e-5, atol=1e-5)


def test_a_trained_torchvision_twin_exports_as_timm_for_its_input_size(tmp_path):
    model = _trained_like("tv:resnet18")  # the failure of issue 24: frozen BatchNorm matched no stock builder
    save_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["pretrained_cfg"]["input_size"] == [3, 28, 28]
    assert config["pretrained_cfg"].get("test_input_size") is None
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(dd_hub.load(tmp_path)(x), model(x), rtol=1e-5, atol=1e-5)


def test_builder_arguments_that_fit_the_network_are_recorded_and_rebuilt(tmp_path):
    model = dd_hub.create_model("tv:googlenet", **MNIST)
    assert model.train()(torch.rand(2, 1, 28, 28)).shape == (2, 10)  # logits, not GoogLeNet's auxiliary outputs
    save_model(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_args"] == {"aux_logits": False}
    assert dd_hub.create_model("tv:vit_b_32", num_classes=3, input_size=(3, 64, 64)).model.image_size == 64


def test_an_export_that_does_not_reload_as_the_same_network_is_refused_up_front(monkeypatch):
    model = dd_hub.create_model("tv:squeezenet1_1", **MNIST)
    reload = directory.load_directory

    def reload_with_other_weights(path, **kwargs):
        other = reload(path, **kwargs)
        with torch.no_grad():
            next(other.parameters()).mul_(2)
        return other

    monkeypatch.setattr(directory, "load_directory", reload_with_other_weights)
    with pytest.raises(DDHubError, match="does not reload as the same network"):
        check_export(model.train(), (1, 28, 28))
    assert model.training  # left as it was


def test_a_torchvision_network_not_built_by_dd_hub_is_refused_in_one_line(tmp_path):
    import torchvision

    with pytest.raises(DDHubError, match=r"not built by dd-hub.*create_model\('tv:NAME'"):
        save_model(NormalizedModel(torchvision.models.squeezenet1_1(num_classes=3), [0.5] * 3, [0.2] * 3), tmp_path)


def test_a_network_too_small_for_28x28_images_resizes_them_inside_the_model_and_says_so(tmp_path):
    import timm
    import torch.nn.functional as F

    model = dd_hub.create_model("convnext_femto", **MNIST).eval()  # 32x downsampling: 28x28 leaves nothing
    assert model.resize_to == (32, 32)
    save_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["resize_input"] is True and config["pretrained_cfg"]["input_size"] == [1, 32, 32]
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(dd_hub.load(tmp_path)(x), expected, rtol=1e-5, atol=1e-5)
        plain = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()  # resize as the config says
        resized = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        torch.testing.assert_close(plain((resized - 0.1307) / 0.3081), expected, rtol=1e-4, atol=1e-4)


def test_a_forced_resize_of_a_torchvision_network_round_trips(tmp_path):
    model = dd_hub.create_model("tv:squeezenet1_1", **MNIST, resize_to=40).eval()
    check_export(model, (1, 28, 28))
    save_model(model, tmp_path)
    assert dd_hub.load(tmp_path).resize_to == (40, 40)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "resize_input": "yes"}))
    with pytest.raises(DDHubError, match="resize_input must be true or false"):
        dd_hub.load(tmp_path)


def test_torchvision_attention_gets_a_double_backward_with_the_same_weights_and_outputs():
    from torch import nn
    from dd_hub.models.twice_differentiable import make_twice_differentiable

    torch.manual_seed(0)
    attention = nn.MultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(2, 5, 16, requires_grad=True)
    stock = attention(x, x, x, need_weights=False)[0]
    (grad,) = torch.autograd.grad(stock.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="not implemented"):  # the fused kernel: what this switch is for
        grad.pow(2).sum().backward()
    keys = set(attention.state_dict())
    assert make_twice_differentiable(attention) == 1 and set(attention.state_dict()) == keys
    out = attention(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(out, stock)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    grad.pow(2).sum().backward()
    assert torch.isfinite(attention.in_proj_weight.grad).all() and attention.in_proj_weight.grad.abs().sum() > 0
    vit = dd_hub.create_model("tv:vit_b_16", **MNIST)  # every attention layer of a built network is switched
    assert not any(type(m) is nn.MultiheadAttention for m in vit.modules())


def test_a_network_whose_layers_need_their_version_reloads(tmp_path):
    """MNASNet refuses a state dict without torch's layer versions, which safetensors cannot hold: dd_hub.load gives
    the build's own."""
    model = dd_hub.create_model("tv:mnasnet0_5", **MNIST).eval()
    check_export(model, (1, 28, 28))
    save_model(model, tmp_path)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(dd_hub.load(tmp_path)(x), model(x))
