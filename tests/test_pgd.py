"""PGD and FGS: budgets respected, restarts never hurt, the shared result semantics, and agreement with
torchattacks (an independent implementation)."""
import pytest
import torch

from dd_hub import DDHubError, create_model, fgs, pgd
from dd_hub.attacks import threat_model
from dd_hub.data.datasets import create_dataset

torchattacks = pytest.importorskip("torchattacks")

# Agreement tolerance: same robust accuracy to within one example, and >= 99.9% of pixels equal to 1e-5 (a
# gradient component at ~0 may take the other sign when torch sums in another order).
PIXEL_TOL, PIXEL_SHARE = 1e-5, 0.999


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create_model("dd_lenet_mnist", num_classes=10).eval()
    data = create_dataset("mnist-5k", "test")
    images = torch.stack([data[i][0] for i in range(64)])
    labels = torch.tensor([data[i][1] for i in range(64)])
    return model, images, labels


def _accuracy(model, images, labels):
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def _agree(model, ours, theirs, labels):
    close = ((ours - theirs).abs() <= PIXEL_TOL).float().mean().item()
    assert close >= PIXEL_SHARE, close
    assert abs(_accuracy(model, ours, labels) - _accuracy(model, theirs, labels)) <= 1 / len(labels) + 1e-9


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
def test_pgd_matches_torchattacks(setup, norm, eps):
    model, images, labels = setup
    steps, alpha = 10, eps / 4
    ours = pgd(model, images, labels, eps=eps, norm=norm, steps=steps, step_size=alpha,
               random_start=False).adversarial
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    theirs = cls(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(images, labels)
    _agree(model, ours, theirs, labels)


def test_fgs_matches_torchattacks(setup):
    model, images, labels = setup
    ours = fgs(model, images, labels, eps=0.1).adversarial
    _agree(model, ours, torchattacks.FGSM(model, eps=0.1)(images, labels), labels)


def test_fgs_l2_is_the_fast_gradient_method(setup):
    model, images, labels = setup
    result = fgs(model, images, labels, eps=1.0, norm="l2", bounds=None)
    torch.testing.assert_close(result.norms("l2"), torch.ones(len(images)))
    assert _accuracy(model, result.adversarial, labels) < _accuracy(model, images, labels)


@pytest.mark.parametrize("attack", ["fgs", "pgd"])
def test_result_semantics_and_default_labels(setup, attack):
    model, images, labels = setup
    run = (lambda y: fgs(model, images, y, eps=0.1)) if attack == "fgs" else (
        lambda y: pgd(model, images, y, eps=0.1, steps=3, generator=torch.Generator().manual_seed(0)))
    result = run(labels)
    assert result.iterations is None and torch.equal(result.inputs, images)
    with torch.no_grad():
        predicted = model(result.adversarial).argmax(1)
        clean = model(images).argmax(1)
    assert result.success.tolist() == (predicted != labels).tolist()
    assert torch.equal(result.perturbation, result.adversarial - images)
    assert torch.equal(run(None).adversarial, run(clean).adversarial)  # labels=None: the model's predictions


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 1.0)])
def test_pgd_respects_budget_and_box(setup, norm, eps):
    model, images, labels = setup
    adv = pgd(model, images, labels, eps=eps, norm=norm, steps=5, restarts=2,
              generator=torch.Generator().manual_seed(1)).adversarial
    size = (adv - images).flatten(1).abs().amax(1) if norm == "linf" else (adv - images).flatten(1).norm(dim=1)
    assert size.max() <= eps + 1e-5
    assert adv.min() >= 0 and adv.max() <= 1
    assert _accuracy(model, adv, labels) <= _accuracy(model, images, labels)


def test_more_restarts_never_raise_accuracy(setup):
    model, images, labels = setup
    one = pgd(model, images, labels, eps=0.03, steps=3, restarts=1, generator=torch.Generator().manual_seed(2))
    three = pgd(model, images, labels, eps=0.03, steps=3, restarts=3, generator=torch.Generator().manual_seed(2))
    assert _accuracy(model, three.adversarial, labels) <= _accuracy(model, one.adversarial, labels)
    assert three.success.sum() >= one.success.sum()


def test_zero_budget_is_identity(setup):
    model, images, labels = setup
    assert torch.equal(pgd(model, images, labels, eps=0.0, steps=3).adversarial, images)


def test_bad_arguments_and_presets():
    with pytest.raises(DDHubError, match="PGD norm must be one of 'l2', 'linf', got 'l1'"):
        pgd(torch.nn.Identity(), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), eps=0.1, norm="l1")
    with pytest.raises(DDHubError, match="FGS norm"):
        fgs(torch.nn.Identity(), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), eps=0.1, norm="inf")
    assert threat_model("cifar10-linf") == ("linf", 8 / 255)
    with pytest.raises(DDHubError, match="threat model"):
        threat_model("svhn")


@pytest.mark.slow
def test_autoattack_is_not_weaker_than_pgd(setup):
    from dd_hub.attacks.autoattack import autoattack

    model, images, labels = setup
    pgd_acc = _accuracy(model, pgd(model, images[:16], labels[:16], eps=0.05, steps=10,
                                   generator=torch.Generator().manual_seed(0)).adversarial, labels[:16])
    result = autoattack(model, images[:16], labels[:16], norm="linf", eps=0.05)
    assert result.robust_accuracy <= pgd_acc + 1 / 16


def test_evaluate_reports_autoattack_at_named_threat_models(setup):
    from dd_hub.hub.card import report_metrics
    from dd_hub.evaluation.report import EvalConfig, Report, evaluate

    model, images, labels = setup
    data = torch.utils.data.TensorDataset(images[:8], labels[:8])
    config = EvalConfig(deepfool_steps=3, fgs_eps=[0.3], pgd_steps=0, sanity=False, autoattack=["mnist-linf"],
                        autoattack_max_examples=6)
    report = evaluate(model, data, config, progress=False)
    result = report.autoattack["mnist-linf"]
    assert (result["norm"], result["eps"], result["n_examples"]) == ("linf", 0.3, 6)
    assert result["version"] == "custom" and result["attacks"] == ["apgd-ce", "apgd-t"]
    assert result["implementation"].startswith("pyautoattack ")
    assert 0.0 <= result["accuracy"] <= report.fgs["0.3"] + 1 / 6  # not weaker than FGS at the same budget
    assert Report.from_dict(report.to_dict()).autoattack == report.autoattack
    assert report_metrics(report.to_dict())["autoattack@mnist-linf"] == result["accuracy"]


def test_unknown_autoattack_budget_is_a_clear_error():
    from dd_hub.evaluation.report import EvalConfig

    with pytest.raises(DDHubError, match="autoattack.0.' must be one of mnist-linf.*got 'mnist'"):
        EvalConfig(autoattack=["mnist"])
