"""fastnn/checkpoint.py: round trip, atomic writes, refusal of broken or foreign files."""

import json
import os
import zipfile

import numpy as np
import pytest

import fastnn as fnn
from fastnn.checkpoint import CheckpointError, load_checkpoint, restore, save_checkpoint
from fastnn.train import build_mlp


def trained(tmp_path):
    fnn.manual_seed(0)
    model = build_mlp(4, [8], 3, dropout=0.1)
    opt = fnn.optim.Adam(model.parameters(), lr=1e-2)
    x, y = np.random.default_rng(0).standard_normal((16, 4)), np.arange(16) % 3
    for _ in range(3):
        opt.zero_grad()
        fnn.losses.cross_entropy(model(x), y).backward()
        opt.step()
    path = save_checkpoint(str(tmp_path / "c.npz"), model=model, optimizer=opt, epoch=3,
                           config={"note": "x"})
    return model, opt, path


def test_round_trip_restores_model_optimizer_and_generators(tmp_path):
    model, opt, path = trained(tmp_path)
    ckpt = load_checkpoint(path)
    assert ckpt.meta["epoch"] == 3 and ckpt.meta["config"] == {"note": "x"}
    fnn.manual_seed(9)
    other = build_mlp(4, [8], 3, dropout=0.1)
    opt2 = fnn.optim.Adam(other.parameters(), lr=1e-2)
    restore(ckpt, model=other, optimizer=opt2)
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert opt2._steps == opt._steps
    np.testing.assert_array_equal(opt2.state["exp_avg"][0], opt.state["exp_avg"][0])
    assert other[3].generator.random() == model[3].generator.random()


def test_no_pickle_inside(tmp_path):
    _, _, path = trained(tmp_path)
    with np.load(path, allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)
        json.loads(str(f["__fastnn__"]))


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "junk", "object"])
def test_broken_or_foreign_files_refused_with_one_line(tmp_path, damage):
    _, _, path = trained(tmp_path)
    bad = tmp_path / "bad.npz"
    raw = open(path, "rb").read()
    if damage == "truncate":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        b = bytearray(raw)
        for i in range(len(b) // 3, len(b) // 3 + 64):
            b[i] ^= 0xFF
        bad.write_bytes(bytes(b))
    elif damage == "foreign":
        np.savez(bad, weights=np.ones(3))
    elif damage == "junk":
        bad.write_bytes(b"hello")
    else:
        np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
        with zipfile.ZipFile(bad, "w") as z:
            z.write(tmp_path / "o.npy", "__fastnn__.npy")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(str(bad))
    assert "\n" not in str(info.value)


def test_mismatched_model_refused(tmp_path):
    _, _, path = trained(tmp_path)
    with pytest.raises(CheckpointError, match="does not fit"):
        restore(load_checkpoint(path), model=build_mlp(4, [9], 3))


def test_write_is_atomic_old_file_survives_a_failed_save(tmp_path, monkeypatch):
    model, opt, path = trained(tmp_path)
    before = open(path, "rb").read()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, model=model, optimizer=opt)
    assert open(path, "rb").read() == before
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []


def _inflate_member(src, dst, member, shape):
    """Copy checkpoint ``src`` to ``dst`` with ``member``'s .npy header claiming ``shape``."""
    import io

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == member:
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
                data = buf.getvalue() + data[-64:]
            zout.writestr(info, data)


def test_checkpoint_claiming_a_huge_shape_is_refused(tmp_path, capsys):
    """Issue 28: a checkpoint whose weight claims (99999999, 99999) (np.load allocated
    first: a traceback, or the machine out of memory); evaluate and predict exit 2."""
    from fastnn.cli import main

    _, _, path = trained(tmp_path)
    bad = tmp_path / "hostile.npz"
    _inflate_member(path, bad, "model/0.weight.npy", (99999999, 99999))
    with pytest.raises(CheckpointError, match=r"member 'model/0.weight.npy': truncated"):
        load_checkpoint(str(bad))
    for argv in (["evaluate", str(bad)], ["predict", str(bad), str(path), "--out",
                                          str(tmp_path / "p.npy")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.splitlines()[0]  # (a byte-compiling notice may follow)
        assert err.startswith(f"fastnn {argv[0]}: error:") and "truncated" in err
        assert str(bad) in err


def test_record_claiming_a_huge_architecture_is_refused_before_building(tmp_path):
    """A checkpoint whose JSON record claims 10^9 hidden units is refused before the model
    is built (the weights it would need are not in the file)."""
    import io

    from fastnn.recipes import load_trained

    _, _, path = trained(tmp_path)
    bad = tmp_path / "arch.npz"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "__fastnn__.npy":
                meta = json.loads(str(np.load(io.BytesIO(data))))
                meta["config"] = {"architecture": {
                    "input_dim": 4, "hidden": [10**9], "n_outputs": 3, "activation": "relu",
                    "batchnorm": False, "dropout": 0.1, "dtype": "float32"}}
                buf = io.BytesIO()
                np.save(buf, np.array(json.dumps(meta)))
                data = buf.getvalue()
            zout.writestr(info, data)
    with pytest.raises(CheckpointError, match="needs 8000000003 weights"):
        load_trained(str(bad))
