"""Every example of examples/ runs (reduced sizes) and shows the lesson it claims."""

import math
import os
import pathlib
import runpy
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fnn

pytest.importorskip("matplotlib")
EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def example(tmp_path):
    """Load examples/<name>.py and run its main() in quick mode into tmp_path; the
    thread count that the examples set is restored afterwards."""
    threads = fnn.get_num_threads()
    ran = []

    def run(name: str):
        module = runpy.run_path(str(EXAMPLES / f"{name}.py"))
        result = module["main"](out=tmp_path, quick=True)
        ran.append(name)
        return module, result

    yield run
    fnn.set_num_threads(threads)


def written(path: pathlib.Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def test_circuits_numbers_are_the_notes(example, tmp_path):
    _, r = example("circuits")
    v, g = r["values"], r["grads"]
    assert v["add_mul"] == {"x": -2.0, "y": 5.0, "z": -4.0, "q": 3.0, "f": -12.0}
    assert g["add_mul"] == {"x": -4.0, "y": -4.0, "z": 3.0, "q": -4.0, "f": 1.0}
    s = 1.0 / (1.0 + math.exp(-1.0))  # the neuron: sigmoid(w . x + b) = sigmoid(1)
    local = s * (1.0 - s)
    for circuit in ("neuron", "sigmoid_gate"):
        assert v[circuit]["t"] == 1.0
        assert v[circuit]["f"] == pytest.approx(s, rel=1e-15)
        expected = {"w0": local * -1.0, "x0": local * 2.0, "w1": local * -2.0,
                    "x1": local * -3.0, "w2": local, "t": local, "f": 1.0}
        for name, grad in expected.items():
            assert g[circuit][name] == pytest.approx(grad, rel=1e-14), (circuit, name)
    # the notes' rounded values along the gates: 1.37, 0.37, -1.00; gradients -0.53, -0.20
    assert round(v["neuron"]["1+exp"], 2) == 1.37 and round(v["neuron"]["exp"], 2) == 0.37
    assert round(g["neuron"]["1+exp"], 2) == -0.53 and round(g["neuron"]["-t"], 2) == -0.20
    assert all(written(p) for p in r["files"])
    suffixes = {".svg", ".png"} if shutil.which("dot") else {".gv"}
    assert {p.suffix for p in r["files"]} == suffixes


def test_activations_derivatives_are_the_kernels_local_gradients(example, tmp_path):
    module, curves = example("activations")
    assert written(tmp_path / "activations.png")
    assert len(curves) == 10  # the nine kernel activations and PReLU
    h = 1e-6
    for title, (z, _, d) in curves.items():
        away = np.abs(z) > 1e-3  # the kinks of relu, leaky relu, elu and prelu at 0
        if title.startswith("PReLU"):
            y_up = module["prelu_and_local_gradient"](module["PRELU_SLOPE"], z + h)[0]
            y_down = module["prelu_and_local_gradient"](module["PRELU_SLOPE"], z - h)[0]
        else:
            _, name, alpha = next(a for a in module["ACTIVATIONS"] if a[0] == title)
            y_up = module["activation_and_local_gradient"](name, alpha, z + h)[0]
            y_down = module["activation_and_local_gradient"](name, alpha, z - h)[0]
        numeric = (y_up - y_down) / (2 * h)
        np.testing.assert_allclose(d[away], numeric[away], atol=1e-7, err_msg=title)
    assert curves["sigmoid"][2].max() == pytest.approx(0.25)  # the notes: at most 0.25
    assert curves["tanh"][2].max() == pytest.approx(1.0)
    assert set(np.unique(curves["ReLU"][2])) == {0.0, 1.0}


def test_optimizers_paths_and_pictures(example, tmp_path):
    _, paths = example("optimizers")
    assert written(tmp_path / "optimizers.png") and written(tmp_path / "optimizers.gif")
    from PIL import Image

    with Image.open(tmp_path / "optimizers.gif") as gif:
        assert gif.n_frames > 1
    valley = {name: 0.01 * xy[-1, 0] ** 2 + xy[-1, 1] ** 2 for name, xy in
              paths["valley"].items()}
    start = 0.01 * 81 + 1.5 ** 2
    assert all(f < 0.1 * start for f in valley.values())
    assert valley["Nesterov"] < valley["Momentum"] < valley["SGD"]
    # the saddle: SGD lingers near y = 0, the adaptive methods leave at once (a path that
    # leaves the plot stops there)
    y10 = {name: abs(xy[min(10, len(xy) - 1), 1]) for name, xy in paths["saddle"].items()}
    assert y10["SGD"] < 0.01
    for name in ("Adagrad", "RMSprop", "Adam"):
        assert y10[name] > 100 * y10["SGD"], name


def test_spiral_net_separates_what_the_linear_classifier_cannot(example, tmp_path):
    _, r = example("spiral")
    assert r["net"] >= 0.95
    assert r["linear"] <= 0.6
    assert r["l2"][1e-3] > r["l2"][1e-1]  # stronger L2: simpler regions, lower fit
    assert written(tmp_path / "spiral.png") and written(tmp_path / "spiral_l2.png")


def test_initialization_scales(example, tmp_path):
    _, stds = example("initialization")
    assert written(tmp_path / "initialization.png")
    assert stds["tanh, N(0, 0.01²)"][-1] < 1e-4  # vanishes
    assert stds["tanh, N(0, 1)"].min() > 0.9  # saturated at +-1
    # plain Xavier: tanh loses a little at every layer (0.63 -> 0.22 at full size)
    xavier = stds["tanh, Xavier"]
    steps = xavier[1:] / xavier[:-1]
    assert np.all((0.75 < steps) & (steps < 1.0)), steps
    assert xavier[-1] < 0.5 * xavier[0]
    # with tanh's gain, 5/3, the spread holds from layer 2 on
    gained = stds["tanh, Xavier, gain 5/3"]
    assert gained[1:].max() < 1.1 * gained[1:].min() and gained[-1] > 0.5
    assert stds["ReLU, N(0, 1)"][-1] > 1e4  # explodes
    relu_xavier = stds["ReLU, Xavier"]  # the variance halves per layer: std times 1/sqrt(2)
    per_layer = (relu_xavier[-1] / relu_xavier[0]) ** (1 / 9)
    assert 0.6 < per_layer < 0.8, per_layer
    he = stds["ReLU, He"]
    assert 0.5 < he.min() and he.max() < 2.0  # keeps its scale


def test_batchnorm_reaches_a_loss_the_plain_net_does_not(example, tmp_path):
    module, r = example("batchnorm")
    plain, bn = r["plain"], r["batchnorm"]
    assert len(plain) == len(bn) == 200
    late = module["smooth"](bn)[-1]
    assert late < 0.3
    assert plain.min() > 2 * late  # no step of the plain run gets there
    # the caption: the plain net sits on the plateau of chance (ln 10) for hundreds of steps
    assert np.all(np.abs(module["smooth"](plain)[50:] - np.log(10)) < 0.05)
    # the followed unit's input keeps its spread with BatchNorm, collapses without
    spread = r["batchnorm_unit"][:, 2] - r["batchnorm_unit"][:, 0]
    plain_spread = r["plain_unit"][:, 2] - r["plain_unit"][:, 0]
    assert spread[50:].mean() > 10 * plain_spread[50:].mean()
    assert written(tmp_path / "batchnorm.png")


def test_regularization_shows_the_gap(example, tmp_path):
    _, histories = example("regularization")
    assert written(tmp_path / "regularization.png")
    none = histories["none"]
    assert none[-1, 0] < 0.05 * none[-1, 1]  # training loss far below validation loss
    assert none[-1, 2] == 1.0  # every training image right
    assert histories["L2 (weight_decay=1e-3)"][-1, 0] > none[-1, 0]


@pytest.mark.slow
def test_regularization_picture_shows_its_caption(tmp_path):
    """The gallery's caption, on the full-size run the picture is drawn from (100 epochs)."""
    module = runpy.run_path(str(EXAMPLES / "regularization.py"))
    threads = fnn.get_num_threads()
    try:
        h = module["main"](out=tmp_path, quick=False)
    finally:
        fnn.set_num_threads(threads)
    none, l2 = h["none"], h["L2 (weight_decay=1e-3)"]
    dropout, noise = h["Dropout(0.5)"], h["input noise (std 0.5)"]
    best = {name: int(v[:, 1].argmin()) for name, v in h.items()}
    # no regularization: training loss to ~0, the validation loss turns back up
    assert none[-1, 0] < 1e-3 and none[-1, 1] > none[:, 1].min() + 0.02
    # L2 stops the climb (ends within 0.01 of its best) and ends lowest of the four
    assert l2[-1, 1] < l2[:, 1].min() + 0.01
    assert l2[-1, 1] < min(v[-1, 1] for name, v in h.items() if name != "L2 (weight_decay=1e-3)")
    # input noise reaches the lowest validation loss of all, later, then climbs again
    assert noise[:, 1].min() < min(v[:, 1].min() for v in (none, l2, dropout))
    assert best["input noise (std 0.5)"] > best["none"] and noise[-1, 1] > noise[:, 1].min() + 0.05
    # dropout moves the minimum later but ends above no regularization
    assert best["Dropout(0.5)"] > best["none"] and dropout[-1, 1] > none[-1, 1]
    # the validation accuracies stay within about a point of each other
    final_accuracy = [v[-1, 3] for v in h.values()]
    assert max(final_accuracy) - min(final_accuracy) < 0.015


def test_gradcheck_every_layer_and_loss_in_float64(example, tmp_path):
    _, r = example("gradcheck")
    assert written(tmp_path / "gradcheck.png")
    assert len(r["errors"]) == 30
    assert max(r["errors"].values()) < 1e-8, r["errors"]  # the caption: all below 1e-8
    assert all(r["gradcheck"].values())
    sweep = r["sweep"]
    assert sweep["centred, float64"].min() < 1e-8
    assert sweep["centred, float64"].min() < 0.01 * sweep["one-sided, float64"].min()
    assert sweep["centred, float32"].min() > 1e3 * sweep["centred, float64"].min()


def test_xor_is_solved(example, tmp_path):
    module, r = example("xor")
    assert r["solved"]
    np.testing.assert_array_equal(r["outputs"] > 0.5, [False, True, True, False])
    assert r["errors"][-1] < 0.01 < r["errors"][0]
    assert written(tmp_path / "xor.png")


def test_a_script_writes_where_the_environment_says(tmp_path):
    env = {**os.environ, "FASTNN_EXAMPLES_OUT": str(tmp_path), "FASTNN_EXAMPLES_QUICK": "1"}
    out = subprocess.run([sys.executable, str(EXAMPLES / "xor.py")], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert "solved (every output on the target's side of 0.5): True" in out
    assert written(tmp_path / "xor.png")


@pytest.mark.slow
def test_gallery_runs_every_example(tmp_path):
    env = {**os.environ, "FASTNN_EXAMPLES_OUT": str(tmp_path), "FASTNN_EXAMPLES_QUICK": "1"}
    subprocess.run([sys.executable, str(EXAMPLES / "gallery.py")], env=env, check=True,
                   capture_output=True)
    pictures = ["activations.png", "optimizers.png", "optimizers.gif", "spiral.png",
                "spiral_l2.png", "initialization.png", "batchnorm.png", "regularization.png",
                "gradcheck.png", "xor.png"]
    assert all(written(tmp_path / p) for p in pictures)


def test_a_script_writes_into_the_current_directory_not_the_docs(tmp_path):
    """Without --out or $FASTNN_EXAMPLES_OUT a picture lands where the user is; the tracked
    docs/images/ changes only through ``gallery.py --docs``."""
    tracked = EXAMPLES.parent / "docs" / "images" / "xor.png"
    before = tracked.stat().st_mtime_ns
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_EXAMPLES_OUT"}
    subprocess.run([sys.executable, str(EXAMPLES / "xor.py"), "--quick"], cwd=tmp_path,
                   env=env, check=True, capture_output=True)
    assert written(tmp_path / "xor.png")
    assert tracked.stat().st_mtime_ns == before
    out = subprocess.run([sys.executable, str(EXAMPLES / "gallery.py"), "--help"],
                         check=True, capture_output=True, text=True).stdout
    assert "--docs" in out and "--out" in out
